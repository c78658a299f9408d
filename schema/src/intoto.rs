//! in-toto Statement v1 and the SLSA provenance v1 predicate.
//!
//! Field names follow <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>
//! and <https://slsa.dev/spec/v1.0/provenance>.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// An in-toto Statement v1 with any predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Statement<P> {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The artifacts the statement is about.
    pub subject: Vec<Subject>,
    /// URI naming the predicate's type.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    pub predicate: P,
}

/// An artifact named by its digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subject {
    /// Artifact name.
    pub name: String,
    /// Algorithm → hex digest.
    pub digest: BTreeMap<String, String>,
}

/// SLSA provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Provenance {
    /// How the build was defined.
    #[serde(rename = "buildDefinition")]
    pub build_definition: BuildDefinition,
    /// Who ran it.
    #[serde(rename = "runDetails")]
    pub run_details: RunDetails,
}

/// SLSA `buildDefinition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BuildDefinition {
    /// URI of the build type; its parameters are documented in the README.
    #[serde(rename = "buildType")]
    pub build_type: String,
    /// Parameters the user controls.
    #[serde(rename = "externalParameters")]
    pub external_parameters: serde_json::Value,
    /// Parameters the builder chose.
    #[serde(rename = "internalParameters")]
    pub internal_parameters: serde_json::Value,
    /// Inputs: the source commit, the lockfile, the patches.
    #[serde(rename = "resolvedDependencies")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// in-toto ResourceDescriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceDescriptor {
    /// URI of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Name of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Algorithm → hex digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    /// Extra facts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// SLSA `runDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunDetails {
    /// The builder.
    pub builder: Builder,
    /// Run metadata.
    pub metadata: BuildMetadata,
}

/// SLSA `builder`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Builder {
    /// URI identifying the builder.
    pub id: String,
    /// Versions of the builder's tools (rustc, cargo, cmake, go, cc).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
}

/// SLSA `metadata`; timestamps are left out so the statement is reproducible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BuildMetadata {
    /// Identifier of this invocation (derived from the inputs).
    #[serde(rename = "invocationId")]
    pub invocation_id: String,
}
