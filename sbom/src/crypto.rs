//! The FIPS module and the cryptography it provides, as CycloneDX 1.6 cryptographic assets.
//!
//! Every fact comes from the build's FIPS evidence ([`FipsEvidence`]): the module identity and
//! CMVP status from the lockfile and the binary, the TLS protocol versions, cipher suites and
//! key-exchange groups from the binary's own `fips-check` report. The algorithms listed are those
//! the negotiable suites and groups need, plus what every mesh binary uses outside TLS (ECDSA
//! P-256 for SPIFFE SVIDs, SHA-256, the module's CTR_DRBG). An algorithm gets the module's
//! certification level only when the module line holds a CMVP certificate and the algorithm is
//! FIPS-approved (X25519 and ChaCha20-Poly1305 are not).

use std::collections::{BTreeMap, BTreeSet};

use distro_schema::{CmvpStatus, FipsEvidence};
use serde::{Deserialize, Serialize};

use crate::cyclonedx::{Component, ExternalReference, Property};

/// `bom-ref` of the FIPS module component.
pub const MODULE_REF: &str = "crypto:module:aws-lc-fips";
/// Name of the FIPS module component.
pub const MODULE_NAME: &str = "AWS-LC FIPS module";

/// CycloneDX `cryptoProperties`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CryptoProperties {
    /// `algorithm`, `protocol`, ...
    pub asset_type: String,
    /// For algorithms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm_properties: Option<AlgorithmProperties>,
    /// For protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_properties: Option<ProtocolProperties>,
    /// Object identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
}

/// CycloneDX `algorithmProperties`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlgorithmProperties {
    /// `ae`, `signature`, `hash`, `mac`, `kdf`, `key-agree`, `kem`, `drbg`.
    pub primitive: String,
    /// Key or digest size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_set_identifier: Option<String>,
    /// Elliptic curve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<String>,
    /// Always `software-plain-ram` for this module.
    pub execution_environment: String,
    /// CPU architecture of the binary.
    pub implementation_platform: String,
    /// `fips140-3-l1` when the module line is validated and the algorithm approved; `none` otherwise.
    pub certification_level: Vec<String>,
    /// Block cipher mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// What the binary does with it.
    pub crypto_functions: Vec<String>,
    /// Classical security level in bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classical_security_level: Option<u32>,
}

/// CycloneDX `protocolProperties`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolProperties {
    /// `tls`.
    #[serde(rename = "type")]
    pub protocol_type: String,
    /// `1.3`, `1.2`.
    pub version: String,
    /// Suites it negotiates.
    pub cipher_suites: Vec<CipherSuite>,
}

/// CycloneDX `cipherSuite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CipherSuite {
    /// IANA name.
    pub name: String,
    /// `bom-ref`s of the algorithms it uses.
    pub algorithms: Vec<String>,
    /// IANA code points (`0x13,0x01`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<String>,
}

/// The module component, the assets it provides, and what each protocol uses.
pub struct Assets {
    /// The `library` component for the module.
    pub module: Component,
    /// Algorithms and protocols, sorted by `bom-ref`.
    pub provided: Vec<Component>,
    /// Protocol `bom-ref` → algorithm `bom-ref`s.
    pub uses: BTreeMap<String, Vec<String>>,
}

struct Algo {
    name: &'static str,
    primitive: &'static str,
    param: Option<&'static str>,
    curve: Option<&'static str>,
    mode: Option<&'static str>,
    functions: &'static [&'static str],
    level: Option<u32>,
    oid: Option<&'static str>,
    approved: bool,
}

const fn algo(
    name: &'static str,
    primitive: &'static str,
    functions: &'static [&'static str],
) -> Algo {
    Algo {
        name,
        primitive,
        param: None,
        curve: None,
        mode: None,
        functions,
        level: None,
        oid: None,
        approved: true,
    }
}

/// The algorithms this module can report, by name.
fn catalogue(name: &str) -> Option<Algo> {
    Some(match name {
        "AES-128-GCM" => Algo {
            param: Some("128"),
            mode: Some("gcm"),
            level: Some(128),
            oid: Some("2.16.840.1.101.3.4.1.6"),
            ..algo("AES-128-GCM", "ae", &["encrypt", "decrypt"])
        },
        "AES-256-GCM" => Algo {
            param: Some("256"),
            mode: Some("gcm"),
            level: Some(256),
            oid: Some("2.16.840.1.101.3.4.1.46"),
            ..algo("AES-256-GCM", "ae", &["encrypt", "decrypt"])
        },
        "ChaCha20-Poly1305" => Algo {
            param: Some("256"),
            level: Some(256),
            approved: false,
            ..algo("ChaCha20-Poly1305", "ae", &["encrypt", "decrypt"])
        },
        "SHA-256" => Algo {
            param: Some("256"),
            level: Some(128),
            oid: Some("2.16.840.1.101.3.4.2.1"),
            ..algo("SHA-256", "hash", &["digest"])
        },
        "SHA-384" => Algo {
            param: Some("384"),
            level: Some(192),
            oid: Some("2.16.840.1.101.3.4.2.2"),
            ..algo("SHA-384", "hash", &["digest"])
        },
        "HMAC-SHA-256" => Algo {
            param: Some("256"),
            oid: Some("1.2.840.113549.2.9"),
            ..algo("HMAC-SHA-256", "mac", &["tag"])
        },
        "HMAC-SHA-384" => Algo {
            param: Some("384"),
            oid: Some("1.2.840.113549.2.10"),
            ..algo("HMAC-SHA-384", "mac", &["tag"])
        },
        "HKDF-SHA-256" => Algo {
            param: Some("256"),
            ..algo("HKDF-SHA-256", "kdf", &["keyderive"])
        },
        "HKDF-SHA-384" => Algo {
            param: Some("384"),
            ..algo("HKDF-SHA-384", "kdf", &["keyderive"])
        },
        "ECDSA-P256-SHA256" => Algo {
            curve: Some("secp256r1"),
            level: Some(128),
            oid: Some("1.2.840.10045.4.3.2"),
            ..algo(
                "ECDSA-P256-SHA256",
                "signature",
                &["keygen", "sign", "verify"],
            )
        },
        "ECDSA-P384-SHA384" => Algo {
            curve: Some("secp384r1"),
            level: Some(192),
            oid: Some("1.2.840.10045.4.3.3"),
            ..algo("ECDSA-P384-SHA384", "signature", &["verify"])
        },
        "RSA-PSS" => Algo {
            oid: Some("1.2.840.113549.1.1.10"),
            ..algo("RSA-PSS", "signature", &["verify"])
        },
        "RSA-PKCS1-v1_5" => Algo {
            oid: Some("1.2.840.113549.1.1.1"),
            ..algo("RSA-PKCS1-v1_5", "signature", &["verify"])
        },
        "ECDH-P256" => Algo {
            curve: Some("secp256r1"),
            level: Some(128),
            ..algo("ECDH-P256", "key-agree", &["keygen", "keyderive"])
        },
        "ECDH-P384" => Algo {
            curve: Some("secp384r1"),
            level: Some(192),
            ..algo("ECDH-P384", "key-agree", &["keygen", "keyderive"])
        },
        "ECDH-P521" => Algo {
            curve: Some("secp521r1"),
            level: Some(256),
            ..algo("ECDH-P521", "key-agree", &["keygen", "keyderive"])
        },
        "X25519" => Algo {
            curve: Some("x25519"),
            level: Some(128),
            approved: false,
            ..algo("X25519", "key-agree", &["keygen", "keyderive"])
        },
        "ML-KEM-768" => Algo {
            param: Some("768"),
            ..algo(
                "ML-KEM-768",
                "kem",
                &["keygen", "encapsulate", "decapsulate"],
            )
        },
        "ML-KEM-1024" => Algo {
            param: Some("1024"),
            ..algo(
                "ML-KEM-1024",
                "kem",
                &["keygen", "encapsulate", "decapsulate"],
            )
        },
        "CTR_DRBG-AES-256" => Algo {
            param: Some("256"),
            ..algo("CTR_DRBG-AES-256", "drbg", &["generate"])
        },
        _ => return None,
    })
}

/// Algorithms every mesh binary uses outside TLS: SVID keys and signatures, digests, the DRBG.
const BASE: &[&str] = &["CTR_DRBG-AES-256", "ECDSA-P256-SHA256", "SHA-256"];

/// IANA code points of the TLS 1.3 and 1.2 AEAD suites.
fn iana(suite: &str) -> Option<&'static str> {
    Some(match suite {
        "TLS13_AES_128_GCM_SHA256" => "0x13,0x01",
        "TLS13_AES_256_GCM_SHA384" => "0x13,0x02",
        "TLS13_CHACHA20_POLY1305_SHA256" => "0x13,0x03",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => "0xC0,0x2B",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => "0xC0,0x2C",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => "0xC0,0x2F",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => "0xC0,0x30",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => "0xCC,0xA8",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => "0xCC,0xA9",
        _ => return None,
    })
}

/// Algorithms a cipher suite name implies, given the key-exchange groups in use.
fn suite_algorithms(suite: &str, groups: &[&'static str]) -> Vec<&'static str> {
    let mut out = Vec::new();
    if suite.contains("AES_128_GCM") {
        out.push("AES-128-GCM");
    }
    if suite.contains("AES_256_GCM") {
        out.push("AES-256-GCM");
    }
    if suite.contains("CHACHA20_POLY1305") {
        out.push("ChaCha20-Poly1305");
    }
    let tls13 = suite.starts_with("TLS13_");
    if suite.ends_with("SHA256") {
        out.extend(["SHA-256", "HMAC-SHA-256"]);
        out.push(if tls13 { "HKDF-SHA-256" } else { "SHA-256" });
    }
    if suite.ends_with("SHA384") {
        out.extend(["SHA-384", "HMAC-SHA-384"]);
        out.push(if tls13 { "HKDF-SHA-384" } else { "SHA-384" });
    }
    if suite.contains("_ECDSA_") {
        out.push("ECDSA-P256-SHA256");
    }
    if suite.contains("_RSA_") {
        out.extend(["RSA-PSS", "RSA-PKCS1-v1_5"]);
    }
    if tls13 || suite.contains("ECDHE") {
        out.extend(groups.iter().copied());
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Algorithms of a rustls key-exchange group name.
fn group_algorithms(group: &str) -> Vec<&'static str> {
    match group {
        "secp256r1" => vec!["ECDH-P256"],
        "secp384r1" => vec!["ECDH-P384"],
        "secp521r1" => vec!["ECDH-P521"],
        "X25519" => vec!["X25519"],
        "X25519MLKEM768" => vec!["ML-KEM-768", "X25519"],
        "secp256r1MLKEM768" => vec!["ECDH-P256", "ML-KEM-768"],
        "secp384r1MLKEM1024" => vec!["ECDH-P384", "ML-KEM-1024"],
        _ => Vec::new(),
    }
}

/// CycloneDX implementation platform of a target triple.
fn platform(target: &str) -> &'static str {
    match target.split('-').next().unwrap_or("") {
        "x86_64" => "x86_64",
        "i686" | "i586" => "x86_32",
        "aarch64" => "armv8-a",
        "s390x" => "s390x",
        "powerpc64le" => "ppc64le",
        "powerpc64" => "ppc64",
        "" => "unknown",
        _ => "other",
    }
}

fn algorithm_ref(name: &str) -> String {
    format!("crypto:algorithm:{name}")
}

/// The module version as reported by the binary (`AWS-LC FIPS 3.6.0` → `3.6.0`), else its line.
pub fn module_version(ev: &FipsEvidence) -> String {
    ev.module
        .version_in_binary
        .as_deref()
        .map(|v| v.rsplit(' ').next().unwrap_or(v).to_string())
        .unwrap_or_else(|| ev.module.module_line.clone())
}

/// CMVP certificate page.
pub fn cmvp_url(cert: u32) -> String {
    format!(
        "https://csrc.nist.gov/projects/cryptographic-module-validation-program/certificate/{cert}"
    )
}

/// The module and the algorithms and protocols it provides to this binary.
pub fn assets(ev: &FipsEvidence, target: &str) -> Assets {
    let validated =
        ev.module.cmvp_status == CmvpStatus::Validated && ev.module.cmvp_certificate.is_some();
    let plat = platform(target);

    let mut algos: BTreeSet<&'static str> = BASE.iter().copied().collect();
    // TLS version → suite name → algorithm names.
    let mut protocols: BTreeMap<String, BTreeMap<String, Vec<&'static str>>> = BTreeMap::new();
    let mut kx_used: BTreeSet<String> = BTreeSet::new();
    if let Some(sc) = &ev.self_check {
        for cfg in &sc.tls_configs {
            let groups: Vec<&'static str> = cfg
                .kx_groups
                .iter()
                .flat_map(|g| group_algorithms(g))
                .collect();
            kx_used.extend(cfg.kx_groups.iter().cloned());
            for suite in &cfg.cipher_suites {
                let version = if suite.starts_with("TLS13_") {
                    "1.3"
                } else {
                    "1.2"
                };
                let tag = if version == "1.3" {
                    "TLSv1_3"
                } else {
                    "TLSv1_2"
                };
                let offered = cfg.protocol_versions.is_empty()
                    || cfg.protocol_versions.iter().any(|v| v == tag);
                if !offered {
                    continue;
                }
                let names = suite_algorithms(suite, &groups);
                algos.extend(names.iter().copied());
                let entry = protocols
                    .entry(version.to_string())
                    .or_default()
                    .entry(suite.clone())
                    .or_default();
                entry.extend(names);
                entry.sort_unstable();
                entry.dedup();
            }
        }
    }

    let level = |approved: bool| {
        vec![if validated && approved {
            "fips140-3-l1"
        } else {
            "none"
        }
        .to_string()]
    };
    let mut provided = Vec::new();
    for name in &algos {
        let Some(a) = catalogue(name) else { continue };
        provided.push(Component {
            component_type: "cryptographic-asset".into(),
            bom_ref: Some(algorithm_ref(a.name)),
            name: a.name.into(),
            crypto_properties: Some(CryptoProperties {
                asset_type: "algorithm".into(),
                algorithm_properties: Some(AlgorithmProperties {
                    primitive: a.primitive.into(),
                    parameter_set_identifier: a.param.map(str::to_string),
                    curve: a.curve.map(str::to_string),
                    execution_environment: "software-plain-ram".into(),
                    implementation_platform: plat.into(),
                    certification_level: level(a.approved),
                    mode: a.mode.map(str::to_string),
                    crypto_functions: a.functions.iter().map(|f| f.to_string()).collect(),
                    classical_security_level: a.level,
                }),
                protocol_properties: None,
                oid: a.oid.map(str::to_string),
            }),
            ..Component::default()
        });
    }
    let mut uses = BTreeMap::new();
    for (version, suites) in &protocols {
        let bom_ref = format!("crypto:protocol:tls-{version}");
        let mut all: BTreeSet<String> = BTreeSet::new();
        let cipher_suites = suites
            .iter()
            .map(|(suite, names)| {
                let refs: Vec<String> = names
                    .iter()
                    .filter(|n| catalogue(n).is_some())
                    .map(|n| algorithm_ref(n))
                    .collect();
                all.extend(refs.iter().cloned());
                CipherSuite {
                    name: suite.clone(),
                    algorithms: refs,
                    identifiers: iana(suite).map(|s| vec![s.to_string()]).unwrap_or_default(),
                }
            })
            .collect();
        uses.insert(bom_ref.clone(), all.into_iter().collect());
        provided.push(Component {
            component_type: "cryptographic-asset".into(),
            bom_ref: Some(bom_ref),
            name: format!("TLS {version}"),
            version: Some(version.clone()),
            properties: vec![Property::new(
                "distro:tls:key-exchange-groups",
                kx_used.iter().cloned().collect::<Vec<_>>().join(","),
            )],
            crypto_properties: Some(CryptoProperties {
                asset_type: "protocol".into(),
                algorithm_properties: None,
                protocol_properties: Some(ProtocolProperties {
                    protocol_type: "tls".into(),
                    version: version.clone(),
                    cipher_suites,
                }),
                oid: None,
            }),
            ..Component::default()
        });
    }
    provided.sort_by(|a, b| a.bom_ref.cmp(&b.bom_ref));

    let m = &ev.module;
    let mut properties = vec![
        Property::new("distro:fips:module-name", m.module_name.clone()),
        Property::new("distro:fips:module-line", m.module_line.clone()),
        Property::new(
            "distro:fips:crate",
            format!("{}@{}", m.crate_name, m.crate_version),
        ),
        Property::new("distro:fips:cmvp-status", ev.module.cmvp_status.as_str()),
        Property::new("distro:fips:mode", ev.mode.to_string()),
        Property::new("distro:fips:table-source", m.source.clone()),
    ];
    if let Some(cert) = m.cmvp_certificate {
        properties.push(Property::new(
            "distro:fips:cmvp-certificate",
            cert.to_string(),
        ));
    }
    if let Some(v) = &m.version_in_binary {
        properties.push(Property::new("distro:fips:version-in-binary", v.clone()));
    }
    if let Some(p) = &ev.symbols.fips_module_prefix {
        properties.push(Property::new("distro:fips:symbol-prefix", p.clone()));
    }
    properties.sort_by(|a, b| a.name.cmp(&b.name));
    let external_references = match m.cmvp_certificate {
        Some(cert) => vec![ExternalReference {
            ref_type: "certification-report".into(),
            url: cmvp_url(cert),
            comment: Some(format!("CMVP certificate #{cert} ({})", m.cmvp_status.as_str())),
        }],
        None => vec![ExternalReference {
            ref_type: "certification-report".into(),
            url: "https://csrc.nist.gov/projects/cryptographic-module-validation-program/modules-in-process/modules-in-process-list".into(),
            comment: Some(format!("no CMVP certificate ({})", m.cmvp_status.as_str())),
        }],
    };
    let module = Component {
        component_type: "library".into(),
        bom_ref: Some(MODULE_REF.into()),
        publisher: Some("Amazon Web Services".into()),
        name: MODULE_NAME.into(),
        version: Some(module_version(ev)),
        description: Some(format!(
            "{} (FIPS 140-3), built by {} {}; {}",
            m.module_name,
            m.crate_name,
            m.crate_version,
            if ev.symbols.forbidden.is_empty() {
                "the symbol scan of the binary found no other cryptographic implementation"
                    .to_string()
            } else {
                let others: Vec<&str> = ev
                    .symbols
                    .forbidden
                    .iter()
                    .map(|f| f.implementation.as_str())
                    .collect();
                format!("the binary ALSO carries: {}", others.join(", "))
            }
        )),
        scope: Some("required".into()),
        external_references,
        properties,
        ..Component::default()
    };
    Assets {
        module,
        provided,
        uses,
    }
}
