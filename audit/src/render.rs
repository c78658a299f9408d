//! Rendering: JSON is the report as it is; HTML and Markdown are minijinja templates
//! (`templates/`) over the same serialised value, so every format shows the same facts. The
//! HTML is one self-contained file: inline CSS, no scripts, no remote assets, the summary first
//! and the details folded in `<details>`; minijinja escapes every value (`.html` templates are
//! autoescaped), so nothing from an attestation can inject markup.

use minijinja::{Environment, Value};

use crate::error::AuditError;
use crate::report::AuditReport;

/// Output formats of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// One self-contained HTML file.
    Html,
    /// Markdown.
    Markdown,
    /// The typed report as JSON.
    Json,
}

const HTML: &str = include_str!("../templates/report.html");
const MARKDOWN: &str = include_str!("../templates/report.md");

/// Escapes text for a Markdown table cell or line: characters with Markdown meaning get a
/// backslash, HTML is neutralised, and newlines become spaces.
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' => {
                out.push('\\');
                out.push(ch);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn environment() -> Result<Environment<'static>, AuditError> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|source| AuditError::Render {
            format: "html",
            source,
        })?;
    env.set_syntax(syntax);
    // A template naming a field the report does not have is an error, not an empty cell: the
    // report's facts and the templates cannot drift apart silently.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("md", |v: Value| -> String {
        match v.as_str() {
            Some(s) => md_escape(s),
            None if v.is_none() || v.is_undefined() => String::new(),
            None => md_escape(&v.to_string()),
        }
    });
    env.add_template("report.html", HTML)
        .map_err(|source| AuditError::Render {
            format: "html",
            source,
        })?;
    env.add_template("report.md", MARKDOWN)
        .map_err(|source| AuditError::Render {
            format: "md",
            source,
        })?;
    Ok(env)
}

/// Renders the report in `format`.
pub fn render(report: &AuditReport, format: ReportFormat) -> Result<String, AuditError> {
    let (name, label) = match format {
        ReportFormat::Json => {
            let mut text = serde_json::to_string_pretty(report).map_err(|e| AuditError::Io {
                action: "serialising the report",
                path: "(json)".into(),
                source: std::io::Error::other(e),
            })?;
            text.push('\n');
            return Ok(text);
        }
        ReportFormat::Html => ("report.html", "html"),
        ReportFormat::Markdown => ("report.md", "md"),
    };
    let env = environment()?;
    let tmpl = env
        .get_template(name)
        .map_err(|source| AuditError::Render {
            format: label,
            source,
        })?;
    tmpl.render(Value::from(minijinja::value::Serde(report)))
        .map_err(|source| AuditError::Render {
            format: label,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::md_escape;

    /// Markdown metacharacters and HTML in attested text cannot change the Markdown's structure.
    #[test]
    fn markdown_escaping_neutralises_tables_and_html() {
        assert_eq!(
            md_escape("a|b <script>x</script>\n*y*"),
            "a\\|b &lt;script&gt;x&lt;/script&gt; \\*y\\*"
        );
    }
}
