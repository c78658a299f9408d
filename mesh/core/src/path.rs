//! Request-path normalisation: what every route and authorization rule matches, and what the
//! application is sent.
//!
//! A rule that matches the raw request target can be walked around: `/x/../secret`, `//secret`,
//! `/./secret` and `/%73ecret` all name `/secret` to a typical application. As Envoy's HTTP
//! connection manager does, the proxy therefore rewrites the path into one canonical form
//! *before* any rule sees it, and forwards that form, so the rule and the application agree on
//! what was asked. What it cannot put into that form it refuses (400): it fails closed.
//!
//! The steps, in order, on the path (the query string is kept byte for byte and never matched):
//! 1. The target must be origin-form (`/…`); `*` is passed through for `OPTIONS` and the
//!    authority-form of `CONNECT` is left to the caller.
//! 2. Percent-encodings are checked and rewritten: invalid ones (`%`, `%4`, `%zz`) and `%00`
//!    are refused; encodings of unreserved characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3)
//!    are decoded; every other encoding is kept with upper-case hex (`%c0` → `%C0`). Encoded
//!    `/` and `\` (`%2F`, `%5C`, any case) follow [`EscapedSlashes`]. Bytes that may not
//!    appear raw in a path (`"`, `<`, `>`, `^`, `` ` ``, `{`, `|`, `}`, non-ASCII) are
//!    percent-encoded; control characters and NUL are refused; a raw `\` follows
//!    [`Backslashes`].
//! 3. Runs of `/` are merged into one.
//! 4. Dot-segments are removed (RFC 3986 §5.2.4); a `..` that would climb above the root is
//!    refused rather than silently dropped.
//!
//! Letter case is **not** normalised: `/SECRET` is a different path from `/secret`, as it is to
//! a case-sensitive application.

use serde::{Deserialize, Serialize};

/// What to do with a percent-encoded slash (`%2F`) or backslash (`%5C`) in a path.
///
/// Applications disagree about them (some decode before routing, some do not), so a rule on
/// `/a/b` cannot know whether `/a%2Fb` is the same resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// Refuse the request with 400 (the default: fail closed).
    #[default]
    Reject,
    /// Keep them encoded (`%2F`, `%5C`): rules see them as ordinary characters inside one
    /// segment. Only safe when the application does not decode them either.
    Keep,
    /// Decode them to `/` and `\` before the other steps, and forward the result.
    UnescapeAndForward,
    /// Decode them as `unescape_and_forward` does, but answer 307 with the normalised path, so
    /// the client asks again for what the proxy will actually forward.
    UnescapeAndRedirect,
}

/// What to do with a raw backslash in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backslashes {
    /// Refuse the request with 400 (the default: some servers treat `\` as a separator).
    #[default]
    Reject,
    /// Treat `\` as `/` (as browsers and Windows servers do).
    AsSlash,
}

/// Path-normalisation settings (`http_paths` in the local configuration file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathSettings {
    /// Encoded `/` and `\`.
    pub escaped_slashes: EscapedSlashes,
    /// Raw `\`.
    pub backslashes: Backslashes,
}

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in the path")]
    InvalidPercentEncoding,
    /// A NUL byte, raw or as `%00`.
    #[error("NUL in the path")]
    Nul,
    /// A control character (raw; encoded ones are kept encoded).
    #[error("control character in the path")]
    ControlCharacter,
    /// The target is not origin-form (`/…`).
    #[error("the request target does not start with `/`")]
    NotOriginForm,
    /// `..` segments climb above the root.
    #[error("dot-segments climb above the root")]
    EscapesRoot,
    /// A raw backslash, refused by the configuration (`http_paths.backslashes`).
    #[error("backslash in the path (refused by http_paths.backslashes)")]
    Backslash,
    /// `%2F` or `%5C`, refused by the configuration (`http_paths.escaped_slashes`).
    #[error("encoded slash or backslash in the path (refused by http_paths.escaped_slashes)")]
    EscapedSlash,
}

impl PathError {
    /// Short fixed label (logs, metrics: a fixed set, never input-derived).
    pub fn reason(self) -> &'static str {
        match self {
            PathError::InvalidPercentEncoding => "invalid_percent_encoding",
            PathError::Nul => "nul",
            PathError::ControlCharacter => "control_character",
            PathError::NotOriginForm => "not_origin_form",
            PathError::EscapesRoot => "escapes_root",
            PathError::Backslash => "backslash",
            PathError::EscapedSlash => "escaped_slash",
        }
    }
}

/// A normalised request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The normalised path: what rules match and what is forwarded.
    pub path: String,
    /// The query string as received (without `?`), if there was one.
    pub query: Option<String>,
    /// The client should be redirected to the normalised target instead of being served
    /// (only with [`EscapedSlashes::UnescapeAndRedirect`] when it decoded something).
    pub redirect: bool,
}

impl Normalized {
    /// Path and query as they are forwarded (`/a/b?q`).
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// [`Normalized::path_and_query`] as a URI part; when normalisation changed nothing (the
    /// common case) it is the request's own, shared rather than copied.
    pub fn path_and_query_for(&self, uri: &http::Uri) -> Option<http::uri::PathAndQuery> {
        if uri.path() == self.path && uri.query() == self.query.as_deref() {
            if let Some(pq) = uri.path_and_query() {
                return Some(pq.clone());
            }
        }
        self.path_and_query().parse().ok()
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters that may stand raw in a path segment besides unreserved ones (RFC 3986 §3.3:
/// sub-delims, `:` and `@`).
fn is_raw_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn push_encoded(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

/// Step 2: percent-encodings and raw characters. Returns the rewritten path and whether an
/// encoded slash or backslash was decoded.
fn rewrite_encodings(path: &str, s: PathSettings) -> Result<(String, bool), PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut decoded_slash = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::InvalidPercentEncoding);
            };
            let v = (hi << 4) | lo;
            i += 3;
            match v {
                0 => return Err(PathError::Nul),
                b'/' | b'\\' => match s.escaped_slashes {
                    EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                    EscapedSlashes::Keep => push_encoded(&mut out, v),
                    EscapedSlashes::UnescapeAndForward | EscapedSlashes::UnescapeAndRedirect => {
                        decoded_slash = true;
                        if v == b'/' {
                            out.push('/');
                        } else {
                            raw_backslash(&mut out, s)?;
                        }
                    }
                },
                v if is_unreserved(v) => out.push(char::from(v)),
                v => push_encoded(&mut out, v),
            }
            continue;
        }
        match b {
            0 => return Err(PathError::Nul),
            b'\\' => raw_backslash(&mut out, s)?,
            b'/' => out.push('/'),
            b if b < 0x20 || b == 0x7f => return Err(PathError::ControlCharacter),
            b if is_raw_pchar(b) => out.push(char::from(b)),
            b => push_encoded(&mut out, b),
        }
        i += 1;
    }
    Ok((out, decoded_slash))
}

fn raw_backslash(out: &mut String, s: PathSettings) -> Result<(), PathError> {
    match s.backslashes {
        Backslashes::Reject => Err(PathError::Backslash),
        Backslashes::AsSlash => {
            out.push('/');
            Ok(())
        }
    }
}

/// Step 3: merges runs of `/`.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut last_slash = false;
    for c in path.chars() {
        if c == '/' && last_slash {
            continue;
        }
        last_slash = c == '/';
        out.push(c);
    }
    out
}

/// RFC 3986 §5.2.4 "Remove Dot Segments", on a path as it stands (no decoding). Returns the
/// output and whether a `..` tried to climb above the root (the RFC drops such segments; the
/// proxy refuses them).
pub fn remove_dot_segments(path: &str) -> (String, bool) {
    let mut input = path;
    let mut output = String::with_capacity(path.len());
    let mut escaped = false;
    // Removes the last segment and its preceding "/" (if any) from the output buffer.
    fn pop_segment(output: &mut String) -> bool {
        match output.rfind('/') {
            Some(i) => {
                output.truncate(i);
                true
            }
            None => {
                let had = !output.is_empty();
                output.clear();
                had
            }
        }
    }
    while !input.is_empty() {
        // A.
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        }
        // B.
        else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        }
        // C.
        else if input.starts_with("/../") {
            input = &input[3..];
            if !pop_segment(&mut output) {
                escaped = true;
            }
        } else if input == "/.." {
            input = "/";
            if !pop_segment(&mut output) {
                escaped = true;
            }
        }
        // D.
        else if input == "." || input == ".." {
            input = "";
        }
        // E.
        else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    (output, escaped)
}

/// Normalises one origin-form path (`path` without the query; `query` as received).
pub fn normalize(
    path: &str,
    query: Option<&str>,
    s: PathSettings,
) -> Result<Normalized, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let (rewritten, decoded_slash) = rewrite_encodings(path, s)?;
    let merged = merge_slashes(&rewritten);
    let (clean, escaped) = remove_dot_segments(&merged);
    if escaped {
        return Err(PathError::EscapesRoot);
    }
    // Invariant: the input starts with `/`, and dot-segment removal keeps a leading `/` (the
    // root can only be emptied by `/..` or `/.`, which leave "/" behind).
    let clean = if clean.is_empty() { "/".into() } else { clean };
    Ok(Normalized {
        path: clean,
        query: query.map(str::to_string),
        redirect: decoded_slash && s.escaped_slashes == EscapedSlashes::UnescapeAndRedirect,
    })
}

/// Whether a rule's path (an authorization `paths` entry or a route's `path_prefix`) is in the
/// normal form requests are matched in; a trailing `*` is allowed. A rule written any other
/// way (`/a/../b`, `/a//b`, `/%61`) could never match and is refused with the configuration.
pub fn rule_path_is_normal(p: &str) -> bool {
    let p = p.strip_suffix('*').unwrap_or(p);
    if p.is_empty() {
        return true;
    }
    let keep = PathSettings {
        escaped_slashes: EscapedSlashes::Keep,
        backslashes: Backslashes::Reject,
    };
    normalize(p, None, keep).is_ok_and(|n| n.path == p)
}

/// Why a rule's path is refused, for a configuration error: what it is not, and the normal form
/// to write instead when there is one (`/a/../b` → `/b`, `/%61` → `/a`). `Ok` when
/// [`rule_path_is_normal`].
pub fn check_rule_path(p: &str) -> Result<(), String> {
    if rule_path_is_normal(p) {
        return Ok(());
    }
    let (body, star) = match p.strip_suffix('*') {
        Some(b) => (b, "*"),
        None => (p, ""),
    };
    let keep = PathSettings {
        escaped_slashes: EscapedSlashes::Keep,
        backslashes: Backslashes::Reject,
    };
    let why = "requests are matched after normalisation (no `.`/`..` segments, no `//`, \
               unreserved characters not percent-encoded, other bytes percent-encoded with \
               upper-case hex), so this rule could never match";
    Err(match normalize(body, None, keep) {
        Ok(n) => format!(
            "path {p:?} is not in normal form: {why}; write {:?}",
            format!("{}{star}", n.path)
        ),
        Err(e) => format!("path {p:?} cannot be matched: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        norm_with(p, PathSettings::default())
    }

    fn norm_with(p: &str, s: PathSettings) -> Result<String, PathError> {
        normalize(p, None, s).map(|n| n.path)
    }

    const KEEP: PathSettings = PathSettings {
        escaped_slashes: EscapedSlashes::Keep,
        backslashes: Backslashes::Reject,
    };
    const UNESCAPE: PathSettings = PathSettings {
        escaped_slashes: EscapedSlashes::UnescapeAndForward,
        backslashes: Backslashes::AsSlash,
    };

    /// RFC 3986 §5.4.1 (normal) and §5.4.2 (abnormal) examples whose reference is a path,
    /// resolved against the base `http://a/b/c/d;p?q`: merge (§5.2.3) then dot-segment removal
    /// gives the RFC's path; the cases where the RFC silently drops a `..` above the root are
    /// flagged, and the proxy's normaliser refuses exactly those.
    #[test]
    fn rfc3986_section_5_4_examples() {
        // (reference, RFC result path, climbs above the root)
        let table: &[(&str, &str, bool)] = &[
            // 5.4.1 normal examples
            ("g", "/b/c/g", false),
            ("./g", "/b/c/g", false),
            ("g/", "/b/c/g/", false),
            ("/g", "/g", false),
            (";x", "/b/c/;x", false),
            ("g;x", "/b/c/g;x", false),
            (".", "/b/c/", false),
            ("./", "/b/c/", false),
            ("..", "/b/", false),
            ("../", "/b/", false),
            ("../g", "/b/g", false),
            ("../..", "/", false),
            ("../../", "/", false),
            ("../../g", "/g", false),
            // 5.4.2 abnormal examples
            ("../../../g", "/g", true),
            ("../../../../g", "/g", true),
            ("/./g", "/g", false),
            ("/../g", "/g", true),
            ("g.", "/b/c/g.", false),
            (".g", "/b/c/.g", false),
            ("g..", "/b/c/g..", false),
            ("..g", "/b/c/..g", false),
            ("./../g", "/b/g", false),
            ("./g/.", "/b/c/g/", false),
            ("g/./h", "/b/c/g/h", false),
            ("g/../h", "/b/c/h", false),
            ("g;x=1/./y", "/b/c/g;x=1/y", false),
            ("g;x=1/../y", "/b/c/y", false),
        ];
        for (reference, want, climbs) in table {
            let merged = if reference.starts_with('/') {
                (*reference).to_string()
            } else {
                format!("/b/c/{reference}")
            };
            let (got, escaped) = remove_dot_segments(&merged);
            assert_eq!(
                got, *want,
                "remove_dot_segments({merged:?}) for {reference:?}"
            );
            assert_eq!(escaped, *climbs, "climb flag for {reference:?}");
            let n = norm(&merged);
            if *climbs {
                assert_eq!(n, Err(PathError::EscapesRoot), "{reference:?}");
            } else {
                assert_eq!(n.as_deref(), Ok(*want), "{reference:?}");
            }
        }
    }

    /// The cases of Envoy's path-normalisation tests (path_utility_test: already-normal
    /// paths, invalid paths, RFC normalisation, case, merge of slashes), with this proxy's
    /// answers; where it deliberately differs from Envoy (refusing instead of repairing) the
    /// comment says so.
    #[test]
    fn envoy_path_normalisation_cases() {
        // Already normal: unchanged.
        for p in ["/xyz", "/x/y/z", "/A/B/C"] {
            assert_eq!(norm(p).as_deref(), Ok(p));
        }
        // Invalid: NUL and broken percent-encodings.
        assert_eq!(norm("/xyz/.%00../abc"), Err(PathError::Nul));
        assert_eq!(norm("/xyz/%00.%00./abc"), Err(PathError::Nul));
        assert_eq!(
            norm("/xyz/AAAAA%%0000/abc"),
            Err(PathError::InvalidPercentEncoding)
        );
        // Valid, normalised.
        for (input, want) in [
            ("/a/b/../c", "/a/c"),
            ("/a/b/./c", "/a/b/c"),
            ("/a/b/%2E%2E/c", "/a/c"),
            ("/a/b/%2e%2e/c", "/a/c"),
            ("/a/b/%2E./c", "/a/c"),
            ("/a/b/%2E/c", "/a/b/c"),
            ("/./a/b", "/a/b"),
            // Envoy keeps the hex as sent; this proxy upper-cases it.
            ("/%c0%af", "/%C0%AF"),
        ] {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
        // Envoy repairs these; this proxy refuses them (fail closed).
        assert_eq!(norm("a/b/../c"), Err(PathError::NotOriginForm));
        assert_eq!(norm(".."), Err(PathError::NotOriginForm));
        assert_eq!(norm("/a/b/../../../../c"), Err(PathError::EscapesRoot));
        assert_eq!(norm("/../a/b"), Err(PathError::EscapesRoot));
        // Backslashes: refused by default; as `/` when configured, as Envoy does.
        assert_eq!(norm("/a/..\\c"), Err(PathError::Backslash));
        assert_eq!(norm_with("/a/..\\c", UNESCAPE).as_deref(), Ok("/c"));
        // Encoded slash / backslash: refused by default; kept (upper-cased) or decoded when
        // configured.
        assert_eq!(norm("/%5c%25"), Err(PathError::EscapedSlash));
        assert_eq!(norm_with("/%5c%25", KEEP).as_deref(), Ok("/%5C%25"));
        assert_eq!(norm("/a/%2F%2f/c"), Err(PathError::EscapedSlash));
        assert_eq!(norm_with("/a/%2F%2f/c", KEEP).as_deref(), Ok("/a/%2F%2F/c"));
        assert_eq!(norm_with("/a/%2F%2f/c", UNESCAPE).as_deref(), Ok("/a/c"));
        // Merge of slashes (the query is never touched).
        for (input, want) in [
            ("/a//b/c/", "/a/b/c/"),
            ("/a", "/a"),
            ("//a/b/c", "/a/b/c"),
            ("/a//b/c", "/a/b/c"),
            ("/a/b/c//", "/a/b/c/"),
            ("/a///b/c", "/a/b/c"),
            ("/a////b/c", "/a/b/c"),
        ] {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
        let n = normalize("/a//b", Some("a=///c"), PathSettings::default()).unwrap();
        assert_eq!(n.path_and_query(), "/a/b?a=///c");
        let n = normalize("//a/", Some(""), PathSettings::default()).unwrap();
        assert_eq!(n.path_and_query(), "/a/?");
    }

    /// Every spelling of `/secret` from the bypass report normalises to `/secret` (or is
    /// refused); case is kept.
    #[test]
    fn bypass_spellings_of_secret() {
        for p in [
            "/secret",
            "/x/../secret",
            "//secret",
            "/./secret",
            "/%73ecret",
            "/%73%65%63%72%65%74",
            "/x/%2e%2e/secret",
            "/x/.%2E/secret",
            "///x//..//secret",
        ] {
            assert_eq!(norm(p).as_deref(), Ok("/secret"), "{p}");
        }
        assert_eq!(norm("/secret/").as_deref(), Ok("/secret/"));
        assert_eq!(norm("/SECRET").as_deref(), Ok("/SECRET"));
        assert_eq!(norm("/%2e%2e/secret"), Err(PathError::EscapesRoot));
        assert_eq!(norm("/secret%2F.."), Err(PathError::EscapedSlash));
        assert_eq!(norm("/secret%2f.."), Err(PathError::EscapedSlash));
        // Decoding %2F makes it a real separator, so the dot-segment applies afterwards.
        assert_eq!(norm_with("/secret%2F..", UNESCAPE).as_deref(), Ok("/"));
        assert_eq!(
            norm_with("/x%2F..%2Fsecret", UNESCAPE).as_deref(),
            Ok("/secret")
        );
        assert_eq!(
            norm_with("/secret%2F..", KEEP).as_deref(),
            Ok("/secret%2F..")
        );
    }

    /// Raw characters outside RFC 3986 pchar are encoded; control characters are refused;
    /// redirect is asked only when a slash was decoded.
    #[test]
    fn raw_characters_and_redirect() {
        assert_eq!(norm("/a|b{c}").as_deref(), Ok("/a%7Cb%7Bc%7D"));
        assert_eq!(norm("/caf\u{e9}").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(norm("/a\tb"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a\0b"), Err(PathError::Nul));
        assert_eq!(norm("/a%4"), Err(PathError::InvalidPercentEncoding));
        assert_eq!(norm("/a%"), Err(PathError::InvalidPercentEncoding));
        assert_eq!(norm("/a%zz"), Err(PathError::InvalidPercentEncoding));
        assert_eq!(
            norm("/a;b=c:d@e!$&'()*+,").as_deref(),
            Ok("/a;b=c:d@e!$&'()*+,")
        );
        assert_eq!(norm("/%41%7e%5F").as_deref(), Ok("/A~_"));
        assert_eq!(norm("/%3f%23").as_deref(), Ok("/%3F%23"));
        let redirect = PathSettings {
            escaped_slashes: EscapedSlashes::UnescapeAndRedirect,
            backslashes: Backslashes::Reject,
        };
        let n = normalize("/a%2Fb", Some("q=1"), redirect).unwrap();
        assert!(n.redirect);
        assert_eq!(n.path_and_query(), "/a/b?q=1");
        assert!(!normalize("/a/b", None, redirect).unwrap().redirect);
        assert_eq!(
            normalize("/a%5Cb", None, redirect),
            Err(PathError::Backslash)
        );
    }

    /// Rule paths must be written in normal form.
    #[test]
    fn rule_paths_in_normal_form() {
        for p in ["/secret", "/api/", "/api/*", "/", "", "*", "/a%2Fb", "/%C0"] {
            assert!(rule_path_is_normal(p), "{p}");
        }
        for p in [
            "secret",
            "/a/../b",
            "//a",
            "/%73ecret",
            "/a/./b",
            "/%c0",
            "/a\\b",
        ] {
            assert!(!rule_path_is_normal(p), "{p}");
        }
    }
}
