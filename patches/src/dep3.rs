//! DEP-3 patch headers, plus the advisory fields this distribution adds.
//!
//! A patch is a git-format patch (`git format-patch` mbox: `From:`, `Subject:`, body) or a plain
//! DEP-3 header block, followed by the diff. Parsing is lenient where DEP-3 is: field names are
//! case-insensitive, `Subject`/`Description` and `From`/`Author` are synonyms, continuation lines
//! are folded, free text is kept as the long description and unknown fields are ignored. It is
//! strict where a wrong value would mislead an auditor or the backport engine: `Origin` category,
//! `Last-Update` date, advisory ids, `Severity` and the `Affected-Versions` range; those errors
//! name the file and line.
//!
//! Fields added by this distribution:
//! - `Advisories: RUSTSEC-2026-0049, CVE-2026-1234, GHSA-xxxx-xxxx-xxxx` — what the patch fixes.
//! - `Severity: low|medium|high|critical`.
//! - `Affected-Versions: >=0.1.0, <0.3.2 || >=0.4.0, <0.4.1` — the upstream versions that carry
//!   the bug: a union (`||`) of semver comparator sets, as RustSec writes ranges; lines outside it
//!   are "not affected".

use std::fmt;
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;

use crate::error::PatchError;

/// The category of a patch's origin (DEP-3 `Origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginCategory {
    /// Taken unchanged from upstream.
    Upstream,
    /// An upstream fix adapted to an older line.
    Backport,
    /// Written by this distribution.
    Vendor,
    /// Anything else.
    Other,
}

impl OriginCategory {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "upstream" => Some(Self::Upstream),
            "backport" => Some(Self::Backport),
            "vendor" => Some(Self::Vendor),
            "other" => Some(Self::Other),
            _ => None,
        }
    }

    /// The DEP-3 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Backport => "backport",
            Self::Vendor => "vendor",
            Self::Other => "other",
        }
    }
}

/// A DEP-3 `Origin`: a category and where the change came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// upstream, backport, vendor or other.
    pub category: OriginCategory,
    /// A URL or `commit:ID`, when given.
    pub reference: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Some(r) => write!(f, "{}, {r}", self.category.as_str()),
            None => f.write_str(self.category.as_str()),
        }
    }
}

/// How bad the fixed problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Low.
    Low,
    /// Medium (also written `moderate`).
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Parses `low|medium|moderate|high|critical` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Self::Low),
            "medium" | "moderate" => Some(Self::Medium),
            "high" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// The parsed header of one patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchMeta {
    /// First line of the description (`Description` or the mail `Subject`).
    pub description: String,
    /// Further description lines.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub long_description: String,
    /// Where it came from.
    pub origin: Option<Origin>,
    /// Bug tracker URLs (`Bug`, `Bug-<Vendor>`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bugs: Vec<String>,
    /// `Author` or the mail `From`.
    pub author: Option<String>,
    /// `Forwarded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<String>,
    /// `Applied-Upstream` (a version, URL or commit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_upstream: Option<String>,
    /// `Last-Update`.
    pub last_update: Option<NaiveDate>,
    /// Advisory ids the patch fixes (CVE-, GHSA-, RUSTSEC-), upper-case, in header order.
    pub advisories: Vec<String>,
    /// Severity of the fixed problem.
    pub severity: Option<Severity>,
    /// Upstream versions affected, as written.
    pub affected_versions: Option<String>,
    /// The parsed `Affected-Versions`.
    #[serde(skip)]
    pub affected: Option<VersionRanges>,
    /// The commit a git-format patch was made from (its mbox `From <id>` line), when real.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The mail `Date` (the author date of a commit), as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// A union of semver comparator sets (`>=1.39.0, <1.42.1 || >=1.43.0, <1.43.1`), as RustSec
/// writes affected and patched ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRanges(pub Vec<semver::VersionReq>);

impl VersionRanges {
    /// Parses `A || B || …`, each part a semver requirement.
    pub fn parse(text: &str) -> Result<VersionRanges, String> {
        let mut out = Vec::new();
        for part in text.split("||") {
            let part = part.trim();
            if part.is_empty() {
                return Err("an empty range around `||`".into());
            }
            out.push(semver::VersionReq::parse(part).map_err(|e| format!("`{part}`: {e}"))?);
        }
        Ok(VersionRanges(out))
    }

    /// Whether `v` is in any of the ranges (pre-releases included, see [`matches_req`]).
    pub fn matches(&self, v: &semver::Version) -> bool {
        self.0.iter().any(|r| matches_req(r, v))
    }
}

impl PatchMeta {
    /// The origin as written in reports (`backport, commit:abc`), or `unknown`.
    pub fn origin_text(&self) -> String {
        self.origin
            .as_ref()
            .map_or_else(|| "unknown".to_string(), ToString::to_string)
    }

    /// Whether upstream version `v` carries the bug (true when no range is given).
    pub fn affects(&self, v: &semver::Version) -> bool {
        self.affected.as_ref().is_none_or(|r| r.matches(v))
    }
}

/// `req.matches(v)`, also for pre-releases of the same major.minor.patch (semver's rule hides
/// pre-releases from ranges written without one; for affected ranges that would be wrong).
pub(crate) fn matches_req(req: &semver::VersionReq, v: &semver::Version) -> bool {
    if req.matches(v) {
        return true;
    }
    if v.pre.is_empty() {
        return false;
    }
    let release = semver::Version::new(v.major, v.minor, v.patch);
    // A pre-release sorts below its release: it matches when the release matches and every
    // lower bound of the range is below the pre-release too.
    req.matches(&release)
        && req.comparators.iter().all(|c| {
            let bound = semver::Version {
                major: c.major,
                minor: c.minor.unwrap_or(0),
                patch: c.patch.unwrap_or(0),
                pre: c.pre.clone(),
                build: semver::BuildMetadata::EMPTY,
            };
            match c.op {
                semver::Op::Greater => v > &bound,
                semver::Op::GreaterEq => v >= &bound,
                semver::Op::Less => v < &bound,
                semver::Op::LessEq => v <= &bound,
                _ => true,
            }
        })
}

/// Whether `id` is a CVE, GHSA or RUSTSEC identifier.
pub fn is_advisory_id(id: &str) -> bool {
    fn digits(s: &str, min: usize, max: usize) -> bool {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    }
    let parts: Vec<&str> = id.split('-').collect();
    match parts.as_slice() {
        ["CVE", year, num] => digits(year, 4, 4) && digits(num, 4, 9),
        ["RUSTSEC", year, num] => digits(year, 4, 4) && digits(num, 4, 4),
        ["GHSA", a, b, c] => [a, b, c].iter().all(|p| {
            p.len() == 4
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        }),
        _ => false,
    }
}

/// Normalises an advisory id: CVE and RUSTSEC upper-case, GHSA with a lower-case body.
pub fn normalise_id(raw: &str) -> String {
    let upper = raw.to_ascii_uppercase();
    if let Some(rest) = upper.strip_prefix("GHSA-") {
        format!("GHSA-{}", rest.to_ascii_lowercase())
    } else {
        upper
    }
}

/// One `Name: value` field with the line it started on.
struct Field {
    name: String,
    value: String,
    line: usize,
}

/// Whether a line starts the diff (the header ends there).
fn is_diff_start(line: &str) -> bool {
    line.starts_with("diff --git ")
        || line.starts_with("Index: ")
        || line.starts_with("--- ")
        || line == "---"
        || line.starts_with("diff -")
}

/// `Name: value` when `line` has that shape (a name of letters, digits and `-`).
fn split_field(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    if name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || !name.as_bytes()[0].is_ascii_alphabetic()
    {
        return None;
    }
    Some((name, value.trim()))
}

/// Parses the header of the patch in `text`; `path` is used in errors.
pub fn parse(path: &Path, text: &str) -> Result<PatchMeta, PatchError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut fields: Vec<Field> = Vec::new();
    let mut free_text: Vec<String> = Vec::new();
    let mut i = 0;
    // git format-patch output: an mbox "From <sha> <date>" line, mail headers, a blank line,
    // then the commit message body (where DEP-3 fields live), up to "---".
    let mbox = lines.first().is_some_and(|l| l.starts_with("From "));
    let mut mbox_commit = None;
    if mbox {
        // "From <40 hex> Mon Sep 17 00:00:00 2001": the commit, unless it is the all-zero
        // placeholder of a patch not made from a commit.
        mbox_commit = lines[0]
            .split_whitespace()
            .nth(1)
            .filter(|id| id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .filter(|id| id.bytes().any(|b| b != b'0'))
            .map(str::to_ascii_lowercase);
        i = 1;
        while i < lines.len() && !lines[i].is_empty() {
            let line = lines[i];
            if line.starts_with([' ', '\t']) {
                if let Some(last) = fields.last_mut() {
                    last.value.push(' ');
                    last.value.push_str(line.trim());
                }
            } else if let Some((name, value)) = split_field(line) {
                fields.push(Field {
                    name: name.to_string(),
                    value: value.to_string(),
                    line: i + 1,
                });
            }
            i += 1;
        }
        // Strip "[PATCH n/m]" from the subject.
        for f in &mut fields {
            if f.name.eq_ignore_ascii_case("subject") {
                let v = f.value.trim_start();
                if v.starts_with('[') {
                    if let Some(end) = v.find(']') {
                        f.value = v[end + 1..].trim().to_string();
                    }
                }
            }
        }
    }
    let mut in_field = false;
    while i < lines.len() {
        let line = lines[i];
        if is_diff_start(line) {
            break;
        }
        if line.starts_with([' ', '\t']) && in_field {
            if let Some(last) = fields.last_mut() {
                let t = line.trim();
                // DEP-3 writes an empty paragraph line as " ." inside a folded field.
                last.value.push('\n');
                last.value.push_str(if t == "." { "" } else { t });
            }
        } else if let Some((name, value)) = split_field(line) {
            fields.push(Field {
                name: name.to_string(),
                value: value.to_string(),
                line: i + 1,
            });
            in_field = true;
        } else {
            in_field = false;
            if !line.trim().is_empty() || !free_text.is_empty() {
                free_text.push(line.trim_end().to_string());
            }
        }
        i += 1;
    }
    while free_text.last().is_some_and(|l| l.is_empty()) {
        free_text.pop();
    }
    let mut meta = build(path, fields, free_text)?;
    meta.commit = mbox_commit;
    Ok(meta)
}

/// `text` as one line: words joined by single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn header_err(path: &Path, line: usize, message: String, help: &str) -> PatchError {
    PatchError::Header {
        path: path.to_path_buf(),
        line,
        message,
        help: help.to_string(),
    }
}

fn build(path: &Path, fields: Vec<Field>, free_text: Vec<String>) -> Result<PatchMeta, PatchError> {
    let mut meta = PatchMeta {
        description: String::new(),
        long_description: String::new(),
        origin: None,
        bugs: Vec::new(),
        author: None,
        forwarded: None,
        applied_upstream: None,
        last_update: None,
        advisories: Vec::new(),
        severity: None,
        affected_versions: None,
        affected: None,
        commit: None,
        date: None,
    };
    let mut long = Vec::new();
    let mut subject = None;
    let mut from = None;
    for f in fields {
        let name = f.name.to_ascii_lowercase();
        let value = f.value.trim().to_string();
        match name.as_str() {
            "description" => {
                let mut parts = value.splitn(2, '\n');
                // The synopsis is one line of words, as a mail Subject reads once unfolded:
                // a run of blanks inside it is one space, so it renders and reads back the same.
                meta.description = one_line(parts.next().unwrap_or_default());
                if let Some(rest) = parts.next() {
                    long.push(rest.trim().to_string());
                }
            }
            "subject" => subject = Some(value),
            "author" => meta.author = Some(value),
            "from" => from = Some(value),
            "date" => meta.date = Some(value),
            "origin" => meta.origin = Some(parse_origin(path, f.line, &value)?),
            "forwarded" => meta.forwarded = Some(value),
            "applied-upstream" => meta.applied_upstream = Some(value),
            "last-update" => {
                let d = NaiveDate::parse_from_str(&value, "%Y-%m-%d").map_err(|_| {
                    header_err(
                        path,
                        f.line,
                        format!("Last-Update `{value}` is not a date"),
                        "write it as YYYY-MM-DD, e.g. Last-Update: 2026-11-28",
                    )
                })?;
                meta.last_update = Some(d);
            }
            "advisories" | "advisory" => {
                for raw in value
                    .split([',', ' ', '\n', '\t'])
                    .filter(|s| !s.is_empty())
                {
                    let id = normalise_id(raw);
                    if !is_advisory_id(&id) {
                        return Err(header_err(
                            path,
                            f.line,
                            format!("`{raw}` is not a CVE, GHSA or RUSTSEC advisory id"),
                            "write ids like CVE-2026-12345, GHSA-abcd-1234-wxyz or RUSTSEC-2026-0049, separated by commas",
                        ));
                    }
                    if !meta.advisories.contains(&id) {
                        meta.advisories.push(id);
                    }
                }
            }
            "severity" => {
                meta.severity = Some(Severity::parse(&value).ok_or_else(|| {
                    header_err(
                        path,
                        f.line,
                        format!("Severity `{value}` is not one of low, medium, high, critical"),
                        "write one of: low, medium, high, critical",
                    )
                })?);
            }
            "affected-versions" => {
                let req = VersionRanges::parse(&value).map_err(|e| {
                    header_err(
                        path,
                        f.line,
                        format!("Affected-Versions `{value}` is not a version range: {e}"),
                        "write semver ranges of upstream versions, several joined by `||`, e.g. Affected-Versions: >=0.1.0, <0.3.2 || >=0.4.0, <0.4.1",
                    )
                })?;
                meta.affected_versions = Some(value);
                meta.affected = Some(req);
            }
            n if n == "bug" || n.starts_with("bug-") => meta.bugs.push(value),
            // Other DEP-3 fields (Reviewed-by, Acked-by, …) and mail headers are not needed.
            _ => {}
        }
    }
    if meta.description.is_empty() {
        // A folded Subject is one line, as mail unfolds it.
        meta.description = one_line(&subject.unwrap_or_default());
    }
    if meta.author.is_none() {
        meta.author = from;
    }
    if meta.description.is_empty() {
        return Err(header_err(
            path,
            1,
            "the patch has no Description (or mail Subject)".into(),
            "add `Description: <one line saying what the patch fixes>` to its header",
        ));
    }
    if meta.origin.is_none() && meta.author.is_none() {
        return Err(header_err(
            path,
            1,
            "the patch has neither Origin nor Author (DEP-3 needs one of them)".into(),
            "add `Origin: upstream, commit:<id>` (or backport/vendor) to its header",
        ));
    }
    long.extend(free_text);
    meta.long_description = long.join("\n").trim().to_string();
    Ok(meta)
}

fn parse_origin(path: &Path, line: usize, value: &str) -> Result<Origin, PatchError> {
    let (first, rest) = match value.split_once(',') {
        Some((a, b)) => (a.trim(), Some(b.trim())),
        None => (value.trim(), None),
    };
    if let Some(category) = OriginCategory::parse(first) {
        return Ok(Origin {
            category,
            reference: rest.filter(|r| !r.is_empty()).map(str::to_string),
        });
    }
    // DEP-3 allows the category to be left out before a URL or commit id; upstream is assumed.
    let looks_like_ref = first.contains("://") || first.starts_with("commit:");
    if rest.is_none() && looks_like_ref {
        return Ok(Origin {
            category: OriginCategory::Upstream,
            reference: Some(first.to_string()),
        });
    }
    Err(header_err(
        path,
        line,
        format!("Origin `{value}` does not start with upstream, backport, vendor or other"),
        "write `Origin: upstream|backport|vendor, <URL or commit:ID>`",
    ))
}

/// A field value folded as DEP-3 writes one: continuation lines start with a space and an
/// empty line is ` .`, so a value of several lines reads back as itself instead of its later
/// lines being taken for other fields or free text.
fn fold(value: &str) -> String {
    let mut out = String::new();
    for (i, line) in value.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\n ");
            if line.trim().is_empty() {
                out.push('.');
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// The header block of a patch this engine writes: a git-format mail with DEP-3 fields in its
/// body, so that `git am`, `git apply` and quilt all read it.
pub fn render_header(meta: &PatchMeta, date: NaiveDate) -> String {
    let author = meta
        .author
        .clone()
        .unwrap_or_else(|| "distro-patches <distro-patches@localhost>".to_string());
    let mut s = String::new();
    let from = meta
        .commit
        .as_deref()
        .unwrap_or("0000000000000000000000000000000000000000");
    s.push_str(&format!("From {from} Mon Sep 17 00:00:00 2001\n"));
    s.push_str(&format!("From: {}\n", fold(&author)));
    // The author date of the change when known (a commit's), else the day it was written.
    let when = meta.date.clone().unwrap_or_else(|| {
        date.and_hms_opt(0, 0, 0)
            .map(|d| d.format("%a, %d %b %Y %H:%M:%S +0000").to_string())
            .unwrap_or_default()
    });
    s.push_str(&format!("Date: {}\n", fold(&when)));
    s.push_str(&format!("Subject: [PATCH] {}\n\n", meta.description));
    if !meta.long_description.is_empty() {
        for line in meta.long_description.lines() {
            // A line that would read back as a field or as the start of the diff is indented:
            // the description stays text and the fields below stay in the header.
            if split_field(line).is_some() || is_diff_start(line) {
                s.push(' ');
            }
            s.push_str(line);
            s.push('\n');
        }
        s.push('\n');
    }
    if let Some(o) = &meta.origin {
        s.push_str(&format!("Origin: {}\n", fold(&o.to_string())));
    }
    for b in &meta.bugs {
        s.push_str(&format!("Bug: {}\n", fold(b)));
    }
    if let Some(f) = &meta.forwarded {
        s.push_str(&format!("Forwarded: {}\n", fold(f)));
    }
    if let Some(a) = &meta.applied_upstream {
        s.push_str(&format!("Applied-Upstream: {}\n", fold(a)));
    }
    if !meta.advisories.is_empty() {
        s.push_str(&format!("Advisories: {}\n", meta.advisories.join(", ")));
    }
    if let Some(sev) = meta.severity {
        s.push_str(&format!("Severity: {}\n", sev.as_str()));
    }
    if let Some(a) = &meta.affected_versions {
        s.push_str(&format!("Affected-Versions: {}\n", fold(a)));
    }
    s.push_str(&format!(
        "Last-Update: {}\n",
        meta.last_update.unwrap_or(date)
    ));
    s.push_str("---\n");
    s
}

/// The diff part of a patch text (from the first `diff --git`/`Index:`/`--- ` line on).
pub fn diff_part(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches(['\n', '\r']);
        if l.starts_with("diff --git ") || l.starts_with("Index: ") || l.starts_with("--- ") {
            return &text[offset..];
        }
        offset += line.len();
    }
    ""
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    const MBOX: &str = "From 1234 Mon Sep 17 00:00:00 2001\nFrom: Jane Dev <jane@example.org>\nDate: Mon, 2 Nov 2026 10:00:00 +0000\nSubject: [PATCH 1/2] Reject empty CRL reason bits\n\nA longer explanation\nof the fix.\n\nOrigin: upstream, commit:abc123\nBug: https://example.org/issues/7\nAdvisories: rustsec-2026-0104, GHSA-82J2-J2CH-GFR8\nSeverity: High\nAffected-Versions: >=0.1.0, <0.3.0\nLast-Update: 2026-11-02\n---\n src/lib.rs | 1 +\n\ndiff --git a/src/lib.rs b/src/lib.rs\n";

    /// A git format-patch mail: subject prefix stripped, DEP-3 fields read from the body,
    /// advisory ids normalised.
    #[test]
    fn parses_git_format_patch_with_dep3_body() {
        let m = parse(Path::new("p.patch"), MBOX).unwrap();
        assert_eq!(m.description, "Reject empty CRL reason bits");
        assert_eq!(m.author.as_deref(), Some("Jane Dev <jane@example.org>"));
        assert_eq!(m.origin_text(), "upstream, commit:abc123");
        assert_eq!(m.advisories, ["RUSTSEC-2026-0104", "GHSA-82j2-j2ch-gfr8"]);
        assert_eq!(m.severity, Some(Severity::High));
        assert!(m.affects(&semver::Version::new(0, 2, 9)));
        assert!(!m.affects(&semver::Version::new(0, 3, 0)));
        assert!(m.long_description.contains("longer explanation"));
    }

    /// Plain DEP-3 with folded Description, lower-case names and no category before a URL.
    #[test]
    fn parses_plain_dep3_leniently() {
        let t = "description: Fix it\n more text\n .\n last\norigin: https://example.org/c/1\nX-Unknown: ignored\n\n--- a/x\n+++ b/x\n";
        let m = parse(Path::new("p"), t).unwrap();
        assert_eq!(m.description, "Fix it");
        assert_eq!(m.origin.unwrap().category, OriginCategory::Upstream);
        assert!(m.long_description.contains("more text"));
    }

    /// The synopsis is one line of words: blanks inside a Description collapse as a folded
    /// Subject's do, so a header `render_header` writes reads back the same (a fuzz find).
    #[test]
    fn description_synopsis_is_one_line_of_words() {
        let t = "Description: Reject \t  empty   CRL bits \nOrigin: upstream\n---\n";
        let m = parse(Path::new("p"), t).unwrap();
        assert_eq!(m.description, "Reject empty CRL bits");
        let d = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let again = parse(Path::new("p"), &render_header(&m, d)).unwrap();
        assert_eq!(again.description, m.description);
    }

    /// Strict fields: a bad advisory id, date, origin or range is an error naming the line.
    #[test]
    fn strict_fields_fail_with_line_numbers() {
        let cases = [
            (
                "Description: x\nOrigin: vendor\nAdvisories: CVE-26-1\n",
                3,
                "not a CVE",
            ),
            (
                "Description: x\nOrigin: vendor\nLast-Update: 28/11/2026\n",
                3,
                "not a date",
            ),
            ("Description: x\nOrigin: somewhere\n", 2, "Origin"),
            (
                "Description: x\nOrigin: vendor\n\nAffected-Versions: banana\n",
                4,
                "not a version range",
            ),
            (
                "Description: x\nOrigin: vendor\nSeverity: dire\n",
                3,
                "Severity",
            ),
            ("Origin: vendor\n", 1, "no Description"),
        ];
        for (text, line, needle) in cases {
            match parse(Path::new("q.patch"), text) {
                Err(PatchError::Header {
                    line: l, message, ..
                }) => {
                    assert_eq!(l, line, "{text}");
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("{text}: expected a header error, got {other:?}"),
            }
        }
    }

    /// Rendered headers parse back to the same metadata.
    #[test]
    fn rendered_header_round_trips() {
        let m = parse(Path::new("p.patch"), MBOX).unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let text = format!("{}\ndiff --git a/x b/x\n", render_header(&m, d));
        let back = parse(Path::new("r.patch"), &text).unwrap();
        assert_eq!(back, m);
    }

    /// RustSec-style unions: `A || B` affects versions in either range and none between;
    /// an empty part is an error naming the line.
    #[test]
    fn affected_versions_union_of_ranges() {
        let t = "Description: x\nOrigin: vendor\nAffected-Versions: >=1.39.0, <1.42.1 || >=1.43.0, <1.43.1\n";
        let m = parse(Path::new("u.patch"), t).unwrap();
        let v = |s| semver::Version::parse(s).unwrap();
        assert!(m.affects(&v("1.39.0")) && m.affects(&v("1.42.0")));
        assert!(!m.affects(&v("1.42.1")) && !m.affects(&v("1.42.9")));
        assert!(m.affects(&v("1.43.0")) && !m.affects(&v("1.43.1")));
        assert!(!m.affects(&v("1.38.9")));
        match parse(
            Path::new("u.patch"),
            "Description: x\nOrigin: vendor\nAffected-Versions: >=1.0.0 ||\n",
        ) {
            Err(PatchError::Header {
                line: 3, message, ..
            }) => assert!(message.contains("empty range"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    /// A git-format patch made from a commit keeps its `From <id>` line and author date when
    /// rendered again; a placeholder id is not taken as a commit.
    #[test]
    fn commit_id_and_author_date_survive_rendering() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        let t = format!("From {id} Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nDate: Tue, 3 Feb 2026 04:05:06 +0100\nSubject: [PATCH] Fix\n\nOrigin: upstream\n---\n");
        let m = parse(Path::new("c.patch"), &t).unwrap();
        assert_eq!(m.commit.as_deref(), Some(id));
        let out = render_header(&m, NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
        assert!(out.starts_with(&format!("From {id} ")), "{out}");
        assert!(
            out.contains("Date: Tue, 3 Feb 2026 04:05:06 +0100\n"),
            "{out}"
        );
        let zero = parse(Path::new("z.patch"), &out.replace(id, &"0".repeat(40))).unwrap();
        assert_eq!(zero.commit, None);
    }
}
