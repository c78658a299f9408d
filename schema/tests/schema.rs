//! Snapshots of the JSON Schema of every output contract: a change to a document other tools
//! read shows up here and has to be accepted deliberately (`cargo insta review`).

use distro_schema::intoto::Provenance;
use distro_schema::{
    BuildRecord, ConformanceSummary, FipsEvidence, FipsSelfCheck, LineRelease, Statement,
};

/// The build record printed by `distro build --format json`.
#[test]
fn build_record_schema() {
    insta::assert_json_snapshot!(schemars::schema_for!(BuildRecord));
}

/// The FIPS evidence written per component.
#[test]
fn fips_evidence_schema() {
    insta::assert_json_snapshot!(schemars::schema_for!(FipsEvidence));
}

/// The self-report printed by `mesh-* fips-check --format json`.
#[test]
fn fips_self_check_schema() {
    insta::assert_json_snapshot!(schemars::schema_for!(FipsSelfCheck));
}

/// The provenance statement.
#[test]
fn provenance_schema() {
    insta::assert_json_snapshot!(schemars::schema_for!(Statement<Provenance>));
}

/// The conformance summary printed by `distro conformance --format json`.
#[test]
fn conformance_summary_schema() {
    insta::assert_json_snapshot!(schemars::schema_for!(ConformanceSummary));
}

/// The release record `OUT/<line>/release.json`, printed by `distro release --format json`.
#[test]
fn line_release_schema() {
    insta::assert_json_snapshot!(schemars::schema_for!(LineRelease));
}
