//! The audit report's JSON Schema: the JSON other tools read is a contract, and a change to it
//! shows up here and has to be accepted deliberately (`cargo insta review`).

/// The report `distro audit --format json` writes.
#[test]
fn audit_report_schema() {
    insta::assert_json_snapshot!(schemars::schema_for!(distro_audit::AuditReport));
}
