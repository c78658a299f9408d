//! OpenVEX 0.2.0 documents: per line and release, which advisories are fixed (by a backported
//! patch or a dependency bump), not affecting (outside the affected range) or still open, so
//! scanners stop reporting fixed-by-backport advisories.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::advisory::{AdvisoryDb, Finding, LockedPackage};
use crate::apply::QueuedPatch;

/// The OpenVEX 0.2.0 JSON-LD context.
pub const CONTEXT: &str = "https://openvex.dev/ns/v0.2.0";

/// An OpenVEX document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    /// Always [`CONTEXT`].
    #[serde(rename = "@context")]
    pub context: String,
    /// IRI of this document (content-derived).
    #[serde(rename = "@id")]
    pub id: String,
    /// Who states it.
    pub author: String,
    /// The author's role.
    pub role: String,
    /// When it was issued.
    pub timestamp: String,
    /// Document version.
    pub version: u32,
    /// What produced it.
    pub tooling: String,
    /// The statements.
    pub statements: Vec<Statement>,
}

/// One VEX statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The vulnerability.
    pub vulnerability: Vulnerability,
    /// Products it is about.
    pub products: Vec<Product>,
    /// not_affected, affected, fixed or under_investigation.
    pub status: String,
    /// Free text on the status (which patch or bump fixed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_notes: Option<String>,
    /// For not_affected: one of the spec's justifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// For not_affected: why, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact_statement: Option<String>,
    /// For affected: what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_statement: Option<String>,
}

/// A vulnerability: its primary id and aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vulnerability {
    /// Primary id (RUSTSEC for crate advisories).
    pub name: String,
    /// Other ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A product (and the subcomponent the vulnerability is in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    /// purl of the product.
    #[serde(rename = "@id")]
    pub id: String,
    /// purls of the affected subcomponents.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subcomponents: Vec<Subcomponent>,
}

/// A subcomponent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subcomponent {
    /// Its purl.
    #[serde(rename = "@id")]
    pub id: String,
}

/// Everything known about one line's release.
pub struct LineFacts<'a> {
    /// The line, `MAJOR.MINOR`.
    pub line: String,
    /// The upstream version of the line's source (checked against patches' affected ranges).
    pub upstream_version: semver::Version,
    /// purls of the released products.
    pub products: Vec<String>,
    /// Cargo.lock at the line's ref.
    pub upstream_lock: &'a [LockedPackage],
    /// Cargo.lock of the patched tree.
    pub patched_lock: &'a [LockedPackage],
    /// The line's queue.
    pub queue: &'a [QueuedPatch],
    /// Patches of other lines' queues (with the line they belong to).
    pub other_queues: &'a [(String, QueuedPatch)],
    /// Action statements for advisories no compatible release fixes (by advisory id).
    pub open_actions: BTreeMap<String, String>,
}

fn names(f: &Finding, id: &str) -> bool {
    f.advisory.eq_ignore_ascii_case(id) || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
}

/// Builds the OpenVEX document of a line's release.
pub fn document(
    facts: &LineFacts<'_>,
    db: &AdvisoryDb,
    author: &str,
    timestamp: DateTime<Utc>,
) -> Document {
    let upstream = crate::advisory::scan(db, facts.upstream_lock);
    let patched = crate::advisory::scan(db, facts.patched_lock);
    let product = |sub: Option<String>| -> Vec<Product> {
        facts
            .products
            .iter()
            .map(|p| Product {
                id: p.clone(),
                subcomponents: sub.iter().map(|s| Subcomponent { id: s.clone() }).collect(),
            })
            .collect()
    };
    let vuln = |id: &str, extra: &[String]| -> Vulnerability {
        let adv = db.find(id);
        let name = adv.map_or_else(|| id.to_string(), |a| a.id.clone());
        let mut aliases: Vec<String> = adv.map(|a| a.aliases.clone()).unwrap_or_default();
        for e in extra {
            if !e.eq_ignore_ascii_case(&name) && !aliases.iter().any(|a| a.eq_ignore_ascii_case(e))
            {
                aliases.push(e.clone());
            }
        }
        if !id.eq_ignore_ascii_case(&name) && !aliases.iter().any(|a| a.eq_ignore_ascii_case(id)) {
            aliases.push(id.to_string());
        }
        Vulnerability {
            name,
            aliases,
            description: adv.map(|a| a.title.clone()).filter(|t| !t.is_empty()),
        }
    };
    let mut statements: Vec<Statement> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let seen = |done: &Vec<String>, v: &Vulnerability| {
        done.iter().any(|d| {
            d.eq_ignore_ascii_case(&v.name) || v.aliases.iter().any(|a| a.eq_ignore_ascii_case(d))
        })
    };

    // Dependency advisories of the upstream lockfile: fixed by a bump or a patch, or open.
    // One statement per advisory and affected crate version: the same advisory can be fixed
    // in one copy of a crate and open in a semver-incompatible other.
    let mut crate_done: Vec<String> = Vec::new();
    for f in &upstream {
        let v = vuln(&f.advisory, &[]);
        let purl = format!("pkg:cargo/{}@{}", f.package, f.version);
        let key = format!("{} {purl}", v.name);
        if crate_done.contains(&key) {
            continue;
        }
        crate_done.push(key);
        if !seen(&done, &v) {
            done.push(v.name.clone());
        }
        let by_patch = facts
            .queue
            .iter()
            .find(|p| p.meta.advisories.iter().any(|id| names(f, id)));
        // The same copy after the queue: same name and major (or minor, below 1.0) version.
        let compatible = |v: &semver::Version| {
            v.major == f.version.major && (v.major > 0 || v.minor == f.version.minor)
        };
        let still = patched
            .iter()
            .any(|p| p.advisory == f.advisory && p.package == f.package && compatible(&p.version));
        let now = facts
            .patched_lock
            .iter()
            .filter(|p| p.name == f.package && p.version != f.version && compatible(&p.version))
            .map(|p| p.version.to_string())
            .collect::<Vec<_>>();
        let mut st = Statement {
            vulnerability: v,
            products: product(Some(purl)),
            status: String::new(),
            status_notes: None,
            justification: None,
            impact_statement: None,
            action_statement: None,
        };
        if !still {
            st.status = "fixed".into();
            let bump = if now.is_empty() {
                String::new()
            } else {
                format!(
                    "{} bumped from {} to {}",
                    f.package,
                    f.version,
                    now.join(", ")
                )
            };
            st.status_notes = Some(match (by_patch, bump.is_empty()) {
                (Some(p), true) => {
                    format!("fixed by patch {} ({})", p.entry.name, p.meta.origin_text())
                }
                (Some(p), false) => format!("fixed by patch {}: {bump}", p.entry.name),
                (None, false) => bump,
                (None, true) => format!("{} no longer in the patched Cargo.lock", f.package),
            });
        } else if let Some(p) = by_patch.filter(|p| !p.is_lockfile_only()) {
            st.status = "fixed".into();
            st.status_notes = Some(format!(
                "fixed by source patch {} ({}) applied to {} {}",
                p.entry.name,
                p.meta.origin_text(),
                f.package,
                f.version
            ));
        } else {
            st.status = "affected".into();
            st.action_statement = Some(facts.open_actions.get(&f.advisory).cloned().unwrap_or_else(|| {
                format!(
                    "Upgrade {} from {} to a release in {} (run `distro patches remediate --line {}`)",
                    f.package,
                    f.version,
                    f.patched.join(" or "),
                    facts.line
                )
            }));
        }
        statements.push(st);
    }

    // Advisories fixed by source patches of this line (the mesh's own code).
    for p in facts.queue {
        for id in &p.meta.advisories {
            let v = vuln(id, &p.meta.advisories);
            if seen(&done, &v) {
                continue;
            }
            done.push(v.name.clone());
            statements.push(Statement {
                vulnerability: v,
                products: product(None),
                status: "fixed".into(),
                status_notes: Some(format!(
                    "fixed by patch {} ({})",
                    p.entry.name,
                    p.meta.origin_text()
                )),
                justification: None,
                impact_statement: None,
                action_statement: None,
            });
        }
    }

    // Advisories other lines carry patches for.
    for (other, p) in facts.other_queues {
        for id in &p.meta.advisories {
            let v = vuln(id, &p.meta.advisories);
            if seen(&done, &v) {
                continue;
            }
            done.push(v.name.clone());
            let mut st = Statement {
                vulnerability: v,
                products: product(None),
                status: String::new(),
                status_notes: None,
                justification: None,
                impact_statement: None,
                action_statement: None,
            };
            if p.meta.affects(&facts.upstream_version) {
                st.status = "affected".into();
                st.action_statement = Some(format!(
                    "Backport {} from line {other}: distro patches backport {}",
                    p.entry.name,
                    p.path.display()
                ));
            } else {
                st.status = "not_affected".into();
                st.justification = Some("vulnerable_code_not_present".into());
                st.impact_statement = Some(format!(
                    "line {} (upstream {}) is outside the affected range {} of patch {} (line {other})",
                    facts.line,
                    facts.upstream_version,
                    p.meta.affected_versions.as_deref().unwrap_or("*"),
                    p.entry.name
                ));
            }
            statements.push(st);
        }
    }

    let ts = timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = serde_json::to_vec(&statements).unwrap_or_default();
    let id = format!(
        "https://openvex.dev/docs/public/vex-{}",
        crate::sha256_hex(&[facts.line.as_bytes(), &body].concat())
    );
    Document {
        context: CONTEXT.into(),
        id,
        author: author.into(),
        role: "Distributor".into(),
        timestamp: ts,
        version: 1,
        tooling: format!("distro-patches {}", env!("CARGO_PKG_VERSION")),
        statements,
    }
}
