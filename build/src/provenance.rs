//! SLSA provenance v1 in an in-toto Statement v1, for each built component.
//!
//! The build type `https://fips-mesh.invalid/distro-build/v1` has these external parameters:
//! `distribution`, `line`, `component`, `package`, `binary`, `features`, `source` {`repository`,
//! `ref`}; internal parameters: `profile`, `locked`, `sourceDateEpoch`, `command`. Resolved
//! dependencies: the source commit, the Cargo.lock digest, each applied patch. No timestamps
//! and no paths of the build machine (the source is named by its repository URL, see
//! [`crate::source::source_repository`]): the statement is reproducible, byte for byte, from
//! two clones of the same commit in different directories.

use std::collections::BTreeMap;

use distro_config::{Component, Distribution, Line};
use distro_schema::intoto::{
    BuildDefinition, BuildMetadata, Builder, Provenance, RunDetails, SLSA_PROVENANCE_V1,
    STATEMENT_TYPE,
};
use distro_schema::{ResourceDescriptor, Statement, Subject};
use serde_json::json;

use crate::cargo::Toolchain;
use crate::source::{AppliedPatch, ExportedSource};
use distro_hostio::sha256_hex;

/// The build type URI.
pub const BUILD_TYPE: &str = "https://fips-mesh.invalid/distro-build/v1";
/// The builder id.
pub const BUILDER_ID: &str = "https://fips-mesh.invalid/distro-build";

/// What a statement is made from.
pub struct Inputs<'a> {
    /// The distribution.
    pub dist: &'a Distribution,
    /// The line.
    pub line: &'a Line,
    /// The exported source.
    pub source: &'a ExportedSource,
    /// The component.
    pub component: &'a Component,
    /// Tool versions.
    pub toolchain: &'a Toolchain,
    /// sha256 of Cargo.lock.
    pub cargo_lock_sha256: &'a str,
    /// The exact build command.
    pub command: &'a [String],
    /// (name, sha256) of every output.
    pub outputs: &'a [(String, String)],
    /// Patches applied, in order.
    pub patches: &'a [AppliedPatch],
}

/// Makes the statement.
pub fn statement(i: &Inputs<'_>) -> Statement<Provenance> {
    let mut deps = vec![ResourceDescriptor {
        uri: Some(format!(
            "git+{}@{}",
            i.source.repository, i.line.source.git_ref
        )),
        name: Some("source".into()),
        digest: BTreeMap::from([("gitCommit".to_string(), i.source.commit.clone())]),
        annotations: BTreeMap::new(),
    }];
    deps.push(ResourceDescriptor {
        uri: None,
        name: Some("Cargo.lock".into()),
        digest: BTreeMap::from([("sha256".to_string(), i.cargo_lock_sha256.to_string())]),
        annotations: BTreeMap::new(),
    });
    for p in i.patches {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "origin".to_string(),
            serde_json::Value::from(p.origin.clone()),
        );
        if !p.advisories.is_empty() {
            annotations.insert(
                "advisories".to_string(),
                serde_json::Value::from(p.advisories.clone()),
            );
        }
        deps.push(ResourceDescriptor {
            uri: None,
            name: Some(format!("patch:{}", p.name)),
            digest: BTreeMap::from([("sha256".to_string(), p.sha256.clone())]),
            annotations,
        });
    }
    let subject = i
        .outputs
        .iter()
        .map(|(name, sha)| Subject {
            name: name.clone(),
            digest: BTreeMap::from([("sha256".to_string(), sha.clone())]),
        })
        .collect();
    let external = json!({
        "distribution": i.dist.name,
        "line": i.line.version,
        "component": i.component.name,
        "package": i.component.package,
        "binary": i.component.binary,
        "features": i.component.features,
        "source": { "repository": i.source.repository, "ref": i.line.source.git_ref },
    });
    let internal = json!({
        "profile": "release",
        "locked": true,
        "sourceDateEpoch": i.source.source_date_epoch,
        "host": i.toolchain.host,
        "command": i.command,
        "patches": i.patches.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
    });
    let invocation_seed = format!(
        "{}|{}|{}|{}",
        i.source.commit,
        i.cargo_lock_sha256,
        i.component.name,
        i.outputs
            .iter()
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject,
        predicate_type: SLSA_PROVENANCE_V1.into(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.into(),
                external_parameters: external,
                internal_parameters: internal,
                resolved_dependencies: deps,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: BUILDER_ID.into(),
                    version: i.toolchain.versions.clone(),
                },
                metadata: BuildMetadata {
                    invocation_id: format!("sha256:{}", sha256_hex(invocation_seed.as_bytes())),
                },
            },
        },
    }
}
