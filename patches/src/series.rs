//! Quilt-style `series` files: one patch file name per line, in application order, `#` comments,
//! an optional `-pN` strip level after the name.

use std::path::{Component, Path, PathBuf};

use crate::error::PatchError;

/// One entry of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesEntry {
    /// File name relative to the queue directory.
    pub name: String,
    /// Leading path components to strip (`-p1` by default, as git-format patches need).
    pub strip: u32,
    /// 1-based line in the series file.
    pub line: usize,
}

/// A parsed series file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The series file.
    pub path: PathBuf,
    /// Entries in order.
    pub entries: Vec<SeriesEntry>,
}

impl Series {
    /// Reads `dir/series`; a missing file is an error.
    pub fn read(dir: &Path) -> Result<Series, PatchError> {
        let path = dir.join("series");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PatchError::SeriesMissing { path })
            }
            Err(e) => return Err(PatchError::io(&path, e)),
        };
        Series::parse(&path, &text)
    }

    /// Parses series text; `path` is used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Series, PatchError> {
        let mut entries: Vec<SeriesEntry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let err = |message: String, help: &str| PatchError::Series {
                path: path.to_path_buf(),
                line,
                message,
                help: help.to_string(),
            };
            let mut words = content.split_whitespace();
            let name = words.next().unwrap_or_default().to_string();
            let mut strip = 1;
            for opt in words {
                match opt.strip_prefix("-p").and_then(|n| n.parse::<u32>().ok()) {
                    Some(n) => strip = n,
                    None => {
                        return Err(err(
                            format!("unknown option `{opt}` after patch `{name}`"),
                            "only a strip level (-p0, -p1, …) may follow the patch name",
                        ))
                    }
                }
            }
            let p = Path::new(&name);
            if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(err(
                    format!("patch name `{name}` leaves the queue directory"),
                    "name patches relative to the directory holding the series, without `..`",
                ));
            }
            if let Some(first) = entries.iter().find(|e| e.name == name) {
                return Err(err(
                    format!(
                        "patch `{name}` is listed twice (first on line {})",
                        first.line
                    ),
                    "remove the duplicate line",
                ));
            }
            entries.push(SeriesEntry { name, strip, line });
        }
        Ok(Series {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The queue directory holding this series.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Whether a patch of this name is listed.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.name == name)
    }
}

/// Appends `name` to `dir/series` (creating it), atomically.
pub fn append(dir: &Path, name: &str) -> Result<(), PatchError> {
    let path = dir.join("series");
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(PatchError::io(&path, e)),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(name);
    text.push('\n');
    Ok(distro_hostio::write_atomic(
        &path,
        text.as_bytes(),
        distro_hostio::PUBLIC,
    )?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    /// Comments, blank lines and strip levels are understood; entries keep their line numbers.
    #[test]
    fn parses_comments_and_strip_levels() {
        let s = Series::parse(
            Path::new("series"),
            "# queue\n\na.patch\nb.patch -p0 # old style\n",
        )
        .unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(
            s.entries[0],
            SeriesEntry {
                name: "a.patch".into(),
                strip: 1,
                line: 3
            }
        );
        assert_eq!(s.entries[1].strip, 0);
        assert_eq!(s.entries[1].line, 4);
    }

    /// Escaping names, unknown options and duplicates are errors naming the line.
    #[test]
    fn rejects_bad_lines() {
        for (text, line) in [
            ("../x.patch\n", 1),
            ("a.patch\na.patch -R\n", 2),
            ("a\nb\na\n", 3),
        ] {
            match Series::parse(Path::new("series"), text) {
                Err(PatchError::Series { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
