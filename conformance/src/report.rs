//! Renderings of the [`ConformanceSummary`]: JUnit XML (one testsuite per environment, with the
//! environment, line and versions as properties), and the environment × scenario matrix in
//! Markdown and self-contained HTML (no scripts, no remote assets). The JSON summary is the
//! source of truth; these carry the same facts.

use std::path::{Path, PathBuf};

use distro_hostio::{write_atomic, PUBLIC};
use distro_schema::{ConformanceSummary, Outcome};
use serde::Serialize;

use crate::scenarios::SCENARIOS;

/// A report could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A template failed (a bug in the template).
    #[error("rendering {what}: {source}")]
    Template {
        /// Which report.
        what: &'static str,
        /// The template error.
        source: minijinja::Error,
    },
    /// A report file could not be written atomically.
    #[error(transparent)]
    Write(#[from] distro_hostio::WriteError),
    /// The report directory could not be created.
    #[error("creating {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Escapes text for XML attributes and content.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: a `testsuites` element with one `testsuite` per environment.
pub fn junit(s: &ConformanceSummary) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"distro conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">\n",
        s.totals.passed + s.totals.failed + s.totals.skipped + s.totals.unsupported,
        s.totals.failed,
        s.totals.skipped + s.totals.unsupported,
        s.duration_ms as f64 / 1000.0
    ));
    for p in &s.profiles {
        let c = &p.counts;
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\" timestamp=\"{}\">\n    <properties>\n",
            xml_escape(&p.name),
            c.passed + c.failed + c.skipped + c.unsupported,
            c.failed,
            u32::from(p.setup_error.is_some()),
            c.skipped + c.unsupported,
            p.duration_ms as f64 / 1000.0,
            xml_escape(&s.started_at),
        ));
        let mut props: Vec<(String, String)> = vec![
            ("environment".into(), p.name.clone()),
            ("environment.description".into(), p.description.clone()),
            ("line".into(), s.line.clone()),
        ];
        if let Some(prev) = &s.previous_line {
            props.push(("previous_line".into(), prev.clone()));
        }
        for (k, v) in &s.versions {
            props.push((format!("version.{k}"), v.clone()));
        }
        props.push(("capabilities".into(), p.capabilities.join(",")));
        for (i, n) in s.notes.iter().enumerate() {
            props.push((format!("note.{i}"), n.clone()));
        }
        for (k, v) in props {
            x.push_str(&format!(
                "      <property name=\"{}\" value=\"{}\"/>\n",
                xml_escape(&k),
                xml_escape(&v)
            ));
        }
        x.push_str("    </properties>\n");
        for r in &p.scenarios {
            x.push_str(&format!(
                "    <testcase classname=\"conformance.{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&p.name),
                xml_escape(&r.name),
                r.duration_ms as f64 / 1000.0
            ));
            let msg = xml_escape(r.message.as_deref().unwrap_or(""));
            match r.outcome {
                Outcome::Passed => {
                    if r.observations.is_empty() {
                        x.push_str("/>\n");
                    } else {
                        x.push_str(&format!(
                            ">\n      <system-out>{}</system-out>\n    </testcase>\n",
                            xml_escape(&r.observations.join("\n"))
                        ));
                    }
                }
                Outcome::Failed => x.push_str(&format!(
                    ">\n      <failure message=\"{msg}\">{msg}</failure>\n    </testcase>\n"
                )),
                Outcome::Skipped | Outcome::Unsupported => x.push_str(&format!(
                    ">\n      <skipped message=\"{}: {msg}\"/>\n    </testcase>\n",
                    r.outcome.as_str()
                )),
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    p: &'a distro_schema::ProfileResult,
    cells: Vec<&'static str>,
    classes: Vec<&'static str>,
}

fn mark(o: Outcome) -> &'static str {
    match o {
        Outcome::Passed => "✅",
        Outcome::Failed => "❌",
        Outcome::Skipped => "⏭",
        Outcome::Unsupported => "—",
    }
}

fn render(
    s: &ConformanceSummary,
    name: &'static str,
    tmpl: &'static str,
) -> Result<String, ReportError> {
    let mut names: Vec<String> = SCENARIOS.iter().map(|x| x.name.to_string()).collect();
    for p in &s.profiles {
        for r in &p.scenarios {
            if !names.contains(&r.name) {
                names.push(r.name.clone());
            }
        }
    }
    let rows: Vec<Row> = s
        .profiles
        .iter()
        .map(|p| {
            let outcome = |n: &String| {
                p.scenarios
                    .iter()
                    .find(|r| &r.name == n)
                    .map(|r| r.outcome)
                    .unwrap_or(Outcome::Skipped)
            };
            Row {
                p,
                cells: names.iter().map(|n| mark(outcome(n))).collect(),
                classes: names.iter().map(|n| outcome(n).as_str()).collect(),
            }
        })
        .collect();
    let mut env = minijinja::Environment::new();
    env.add_template(name, tmpl)
        .map_err(|source| ReportError::Template { what: name, source })?;
    let t = env
        .get_template(name)
        .map_err(|source| ReportError::Template { what: name, source })?;
    t.render(minijinja::context! {
        s => minijinja::Value::from(minijinja::value::Serde(s)),
        profiles => minijinja::Value::from(minijinja::value::Serde(&rows)),
        scenarios => names
    })
    .map_err(|source| ReportError::Template { what: name, source })
}

/// The Markdown matrix.
pub fn markdown(s: &ConformanceSummary) -> Result<String, ReportError> {
    render(s, "report.md", include_str!("../templates/report.md.j2"))
}

/// The self-contained HTML report (autoescaped).
pub fn html(s: &ConformanceSummary) -> Result<String, ReportError> {
    render(
        s,
        "report.html",
        include_str!("../templates/report.html.j2"),
    )
}

/// The files [`write_all`] writes.
pub const FILES: &[&str] = &["summary.json", "junit.xml", "report.md", "report.html"];

/// Writes `summary.json`, `junit.xml`, `report.md`, `report.html` into `dir`.
pub fn write_all(s: &ConformanceSummary, dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_string_pretty(s).unwrap_or_default() + "\n";
    // Reports are published: readable by everyone.
    write_atomic(&dir.join("summary.json"), json.as_bytes(), PUBLIC)?;
    write_atomic(&dir.join("junit.xml"), junit(s).as_bytes(), PUBLIC)?;
    write_atomic(&dir.join("report.md"), markdown(s)?.as_bytes(), PUBLIC)?;
    write_atomic(&dir.join("report.html"), html(s)?.as_bytes(), PUBLIC)?;
    Ok(())
}
