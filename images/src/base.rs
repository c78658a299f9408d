//! The runnable base of every image: the exact Debian packages the binaries link against, as
//! distroless "cc" images are built.
//!
//! The mesh binaries are glibc PIEs (interpreter `ld-linux-x86-64.so.2`, NEEDED `libc.so.6`,
//! `libm.so.6`, `libgcc_s.so.1`). The AWS-LC FIPS module is linked statically into them either
//! way, so a dynamic glibc does not change which CMVP certificate applies; a static glibc would
//! only trade a recorded, patched Debian package for an opaque copy inside each binary.
//!
//! The base is made from the `.deb`s of the packages installed on the build host (the versions
//! the binaries were linked against), fetched once with `apt-get download` into a cache under
//! the output directory and checked against the SHA256 apt's signed index records
//! (`apt-cache show`). Only the files a binary needs are taken from them, with
//! `dpkg-deb --fsys-tarfile`: the loader, `libc.so.6`, `libm.so.6`, `libgcc_s.so.1`, each
//! package's copyright file, and the CA bundle, concatenated from the `ca-certificates` package's
//! certificates exactly as `update-ca-certificates` does (so it is the distribution's bundle, not
//! whatever the build host added to its own).
//!
//! [`DebianBase::prepare`] returns the files as layer entries, each tagged with the package it
//! comes from, so the image SBOM can account for every file.

use distro_hostio::Cmd;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::assemble::{EntryKind, LayerEntry};
use crate::digest;
use crate::error::{Error, Result};

/// Path of the CA bundle in the image (Debian's; `SSL_CERT_FILE` points at it).
pub const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
/// Where the `ca-certificates` package keeps the certificates the bundle is made of.
const MOZILLA_CERTS: &str = "usr/share/ca-certificates/mozilla/";

/// One Debian package the base is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebPackage {
    /// Package name (`libc6`).
    pub name: String,
    /// Exact version (`2.36-9+deb12u14`).
    pub version: String,
    /// Debian architecture (`amd64`, `all`).
    pub architecture: String,
    /// The `.deb` file name as apt saves it.
    pub filename: String,
    /// Where apt downloads it from (`apt-get download --print-uris`).
    pub url: String,
    /// SHA256 of the `.deb` (apt's index, checked against the downloaded file).
    pub sha256: String,
    /// Size of the `.deb`.
    pub size: u64,
    /// SPDX licence expression of what the image takes from it (from its copyright file).
    pub licenses: String,
}

impl DebPackage {
    /// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=DISTRO` (purl spec, `+` and `:` encoded).
    pub fn purl(&self, distro: &str) -> String {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        format!(
            "pkg:deb/debian/{}@{}?arch={}&distro={distro}",
            enc(&self.name),
            enc(&self.version),
            enc(&self.architecture)
        )
    }
}

/// Where a file of the base comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Origin {
    /// Taken verbatim from this package's `.deb`.
    Package(String),
    /// Made from this package's files (the CA bundle from `ca-certificates`).
    DerivedFrom {
        /// The package.
        package: String,
        /// How it was made.
        how: String,
    },
    /// Written by `distro image` itself (`/etc/passwd`, `/etc/group`).
    Generated,
}

/// A base layer entry and its origin.
#[derive(Debug, Clone)]
pub struct BaseEntry {
    /// The entry.
    pub entry: LayerEntry,
    /// Where it comes from.
    pub origin: Origin,
}

/// The Debian base, resolved and unpacked.
#[derive(Debug, Clone)]
pub struct DebianBase {
    /// `debian-12`: the purl `distro` qualifier.
    pub distro: String,
    /// The packages, in name order.
    pub packages: Vec<DebPackage>,
    /// The files, directories and links of the base layer (without the generated accounts).
    pub entries: Vec<BaseEntry>,
    /// Shared libraries the base provides (`libc.so.6`, the loader, ...), for the DT_NEEDED check.
    pub libraries: Vec<String>,
}

/// Paths of one architecture.
struct Arch {
    debian: &'static str,
    triple: &'static str,
    loader: &'static str,
    /// Where the ELF interpreter path points (`lib64/ld-linux-x86-64.so.2`), if not in `lib/`.
    interp_link: Option<&'static str>,
}

fn arch(debian: &str) -> Result<Arch> {
    match debian {
        "amd64" => Ok(Arch {
            debian: "amd64",
            triple: "x86_64-linux-gnu",
            loader: "ld-linux-x86-64.so.2",
            interp_link: Some("lib64/ld-linux-x86-64.so.2"),
        }),
        "arm64" => Ok(Arch {
            debian: "arm64",
            triple: "aarch64-linux-gnu",
            loader: "ld-linux-aarch64.so.1",
            interp_link: Some("lib/ld-linux-aarch64.so.1"),
        }),
        other => Err(Error::invalid(
            "image base",
            format!("no Debian base layout is known for architecture `{other}` (amd64, arm64); set [image] base in distro.toml to an OCI base"),
        )),
    }
}

/// SPDX licences of what the image takes from each package, read from the packages'
/// `/usr/share/doc/<pkg>/copyright` (Debian 12): glibc is LGPL-2.1-or-later (with GPL-2.0 parts
/// carrying a linking exception in the loader), libgcc is GPL-3.0 with the GCC Runtime Library
/// Exception, the CA certificates are Mozilla's under MPL-2.0.
fn licence_of(package: &str) -> String {
    match package {
        "libc6" => "LGPL-2.1-or-later AND GPL-2.0-or-later WITH GCC-exception-2.0".into(),
        "ca-certificates" => "MPL-2.0 AND GPL-2.0-or-later".into(),
        p if p == "libgcc-s1" || (p.starts_with("gcc-") && p.ends_with("-base")) => {
            "GPL-3.0-or-later WITH GCC-exception-3.1".into()
        }
        _ => "NOASSERTION".into(),
    }
}

/// `debian-12` from `/etc/os-release`.
fn host_distro(os_release: &str) -> Result<String> {
    let field = |k: &str| {
        os_release.lines().find_map(|l| {
            l.strip_prefix(k)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    };
    match (field("ID").as_deref(), field("VERSION_ID")) {
        (Some("debian"), Some(v)) if !v.is_empty() => Ok(format!("debian-{v}")),
        (id, _) => Err(Error::invalid(
            "/etc/os-release",
            format!("the Debian base is built from the host's Debian packages, but this host is `{}`; build on Debian 12 or set [image] base in distro.toml", id.unwrap_or("unknown")),
        )),
    }
}

/// Installed version, architecture and Depends of a package (`dpkg-query`).
fn installed(name: &str) -> Result<(String, String, String)> {
    let out = Cmd::new(
        "dpkg-query",
        "find the installed version the binaries were linked against",
    )
    .args([
        "-W",
        "-f",
        "${Version}\t${Architecture}\t${Depends}\t${db:Status-Status}",
        name,
    ])
    .help(format!("install it: apt-get install {name}"))
    .run()?
    .stdout;
    let text = String::from_utf8_lossy(&out);
    let f: Vec<&str> = text.trim_end_matches('\n').split('\t').collect();
    match f.as_slice() {
        [v, a, d, "installed"] if !v.is_empty() => {
            Ok((v.to_string(), a.to_string(), d.to_string()))
        }
        _ => Err(Error::invalid(
            format!("package {name}"),
            format!("is not installed on the build host (dpkg-query says `{}`); install it: apt-get install {name}", text.trim()),
        )),
    }
}

/// URL, file name, size and SHA256 that apt would download for `name=version`.
fn print_uris(name: &str, version: &str) -> Result<(String, String, u64, String)> {
    let spec = format!("{name}={version}");
    let out = Cmd::new("apt-get", "ask apt where the package comes from")
        .args(["download", "--print-uris", &spec])
        .help("run `apt-get update` so apt knows the installed version's archive")
        .run()?
        .stdout;
    let text = String::from_utf8_lossy(&out);
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [url, file, size, sum] = parts.as_slice() {
            let url = url.trim_matches('\'');
            if let (Ok(size), Some(sha)) = (size.parse::<u64>(), sum.strip_prefix("SHA256:")) {
                return Ok((url.to_string(), file.to_string(), size, sha.to_lowercase()));
            }
        }
    }
    Err(Error::invalid(
        format!("apt-get download --print-uris {spec}"),
        format!(
            "printed no URL with a SHA256 (`{}`); run `apt-get update`",
            text.trim()
        ),
    ))
}

/// The SHA256 apt's index records for `name=version` (`apt-cache show`).
fn index_sha256(name: &str, version: &str) -> Result<String> {
    let spec = format!("{name}={version}");
    let out = Cmd::new(
        "apt-cache",
        "read the package's SHA256 from apt's signed index",
    )
    .args(["show", &spec])
    .help("run `apt-get update`")
    .run()?
    .stdout;
    let text = String::from_utf8_lossy(&out);
    for stanza in text.split("\n\n") {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        if field("Version:").as_deref() == Some(version) {
            if let Some(sha) = field("SHA256:") {
                return Ok(sha.to_lowercase());
            }
        }
    }
    Err(Error::invalid(
        format!("apt-cache show {spec}"),
        "has no SHA256 for this version; run `apt-get update`",
    ))
}

/// Name of the `gcc-N-base` package a `libgcc-s1` Depends line names.
fn gcc_base(depends: &str) -> Option<String> {
    depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default())
        .find(|n| n.starts_with("gcc-") && n.ends_with("-base"))
        .map(str::to_string)
}

/// Record of a package resolved and verified before, kept beside its `.deb` in the cache.
fn record_path(cache: &Path, name: &str) -> PathBuf {
    cache.join(format!("{name}.package.json"))
}

/// The cached record of `name` at `version`, if its `.deb` is still there with the sha256 apt's
/// index gave when it was downloaded.
fn cached(name: &str, version: &str, cache: &Path) -> Option<(DebPackage, PathBuf)> {
    let rec: DebPackage =
        serde_json::from_slice(&std::fs::read(record_path(cache, name)).ok()?).ok()?;
    if rec.version != version || rec.filename.contains('/') {
        return None;
    }
    let path = cache.join(&rec.filename);
    let data = std::fs::read(&path).ok()?;
    (digest::sha256_hex(&data) == rec.sha256).then_some((rec, path))
}

/// Resolves `name` at its installed version and makes sure its verified `.deb` is in `cache`.
fn fetch(name: &str, cache: &Path) -> Result<(DebPackage, PathBuf)> {
    let (version, architecture, _) = installed(name)?;
    if let Some(hit) = cached(name, &version, cache) {
        return Ok(hit);
    }
    let (url, filename, size, uri_sha) = print_uris(name, &version)?;
    let sha256 = index_sha256(name, &version)?;
    if uri_sha != sha256 {
        return Err(Error::DigestMismatch {
            what: format!("{name} {version}: apt-get --print-uris and apt-cache show disagree"),
            expected: sha256,
            actual: uri_sha,
        });
    }
    if filename.contains('/') || filename.starts_with('.') {
        return Err(Error::invalid(
            format!("{name} {version}"),
            format!("apt named the file `{filename}`, not a plain file name"),
        ));
    }
    let path = cache.join(&filename);
    let cached_ok = std::fs::read(&path)
        .map(|d| digest::sha256_hex(&d) == sha256)
        .unwrap_or(false);
    if !cached_ok {
        std::fs::create_dir_all(cache).map_err(|e| Error::io("creating", cache, e))?;
        // apt downloads into a private directory; the checked content is then written into the
        // cache atomically, so parallel builds sharing the cache never see a partial .deb.
        let tmp = cache.join(format!(".download-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        let spec = format!("{name}={version}");
        let res = Cmd::new("apt-get", "download the package the base is made from")
            .args(["download", "-q", &spec])
            .cwd(&tmp)
            .help("check that the Debian archive is reachable and run `apt-get update`")
            .run()
            .map_err(Error::from);
        let downloaded = tmp.join(&filename);
        let data = res.and_then(|_| {
            std::fs::read(&downloaded).map_err(|e| Error::io("reading", &downloaded, e))
        });
        let data = match data {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let actual = digest::sha256_hex(&data);
        if actual != sha256 {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(Error::DigestMismatch {
                what: format!("downloaded {filename} (apt's index for {name} {version})"),
                expected: sha256,
                actual,
            });
        }
        let written = distro_hostio::write_atomic(&path, &data, distro_hostio::PUBLIC);
        let _ = std::fs::remove_dir_all(&tmp);
        written?;
    }
    let pkg = DebPackage {
        licenses: licence_of(name),
        name: name.to_string(),
        version,
        architecture,
        filename,
        url,
        sha256,
        size,
    };
    let rec = serde_json::to_vec_pretty(&pkg).map_err(|e| Error::json("package record", e))?;
    distro_hostio::write_atomic(&record_path(cache, name), &rec, distro_hostio::PUBLIC)?;
    Ok((pkg, path))
}

/// The entries of a `.deb`'s data archive, by path without the leading `./`.
fn deb_contents(deb: &Path) -> Result<BTreeMap<String, (EntryKind, u32)>> {
    let tar = Cmd::new("dpkg-deb", "unpack the package's files")
        .arg("--fsys-tarfile")
        .arg(deb)
        .help("install dpkg (Debian's dpkg-deb)")
        .run()?
        .stdout;
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(tar.as_slice());
    let entries = archive
        .entries()
        .map_err(|e| Error::io("reading the data archive of", deb, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("reading the data archive of", deb, e))?;
        let path = entry
            .path()
            .map_err(|e| Error::io("reading an entry path in", deb, e))?
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if path.is_empty() {
            continue;
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| Error::io("reading a file in", deb, e))?;
                EntryKind::File(data)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::io("reading a link in", deb, e))?
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                EntryKind::Symlink(target)
            }
            tar::EntryType::Directory => EntryKind::Dir,
            _ => continue,
        };
        out.insert(path, (kind, mode));
    }
    Ok(out)
}

/// Takes `path` from a package's contents as an entry, or says which package lacks it.
fn take(
    contents: &BTreeMap<String, (EntryKind, u32)>,
    pkg: &DebPackage,
    path: &str,
) -> Result<BaseEntry> {
    let (kind, mode) = contents.get(path).ok_or_else(|| {
        Error::invalid(
            format!("{} {}", pkg.name, pkg.version),
            format!("has no `/{path}`; the Debian base's file list does not fit this release"),
        )
    })?;
    Ok(BaseEntry {
        entry: LayerEntry {
            path: path.to_string(),
            mode: *mode,
            owner: 0,
            kind: kind.clone(),
        },
        origin: Origin::Package(pkg.name.clone()),
    })
}

/// The CA bundle as `update-ca-certificates` writes it: every `mozilla/*.crt` in byte order,
/// each followed by a newline if it lacks one (`sed -e '$a\'`).
fn ca_bundle(contents: &BTreeMap<String, (EntryKind, u32)>) -> Vec<u8> {
    let mut bundle = Vec::new();
    // BTreeMap iterates in byte order of the path, as `sort` in the C locale does.
    for (path, (kind, _)) in contents {
        let Some(name) = path.strip_prefix(MOZILLA_CERTS) else {
            continue;
        };
        if let (true, EntryKind::File(data)) = (name.ends_with(".crt") && !name.contains('/'), kind)
        {
            bundle.extend_from_slice(data);
            if !data.is_empty() && !data.ends_with(b"\n") {
                bundle.push(b'\n');
            }
        }
    }
    bundle
}

impl DebianBase {
    /// Resolves the base's packages at the versions installed on this host, downloads and
    /// verifies their `.deb`s into `cache` (once: a verified `.deb` already there is reused),
    /// and takes the needed files from them.
    pub fn prepare(cache: &Path) -> Result<DebianBase> {
        let os_release = std::fs::read_to_string("/etc/os-release")
            .map_err(|e| Error::io("reading", "/etc/os-release", e))?;
        let distro = host_distro(&os_release)?;
        let (_, _, gcc_depends) = installed("libgcc-s1")?;
        let gcc = gcc_base(&gcc_depends).ok_or_else(|| {
            Error::invalid(
                "libgcc-s1",
                format!("its Depends (`{gcc_depends}`) name no gcc-N-base package, which holds its copyright file"),
            )
        })?;
        let mut packages = Vec::new();
        let mut entries = Vec::new();
        for name in ["ca-certificates", gcc.as_str(), "libc6", "libgcc-s1"] {
            let (pkg, deb) = fetch(name, cache)?;
            let contents = deb_contents(&deb)?;
            let copyright = format!("usr/share/doc/{name}/copyright");
            match name {
                "libc6" => {
                    let a = arch(&pkg.architecture)?;
                    for lib in [a.loader, "libc.so.6", "libm.so.6"] {
                        entries.push(take(&contents, &pkg, &format!("lib/{}/{lib}", a.triple))?);
                    }
                    if let Some(link) = a.interp_link {
                        entries.push(take(&contents, &pkg, link)?);
                    }
                    entries.push(take(&contents, &pkg, &copyright)?);
                }
                "libgcc-s1" => {
                    let a = arch(&pkg.architecture)?;
                    entries.push(take(
                        &contents,
                        &pkg,
                        &format!("lib/{}/libgcc_s.so.1", a.triple),
                    )?);
                    // A link to gcc-N-base's directory, which holds the copyright file.
                    entries.push(take(&contents, &pkg, &format!("usr/share/doc/{name}"))?);
                }
                "ca-certificates" => {
                    let bundle = ca_bundle(&contents);
                    if bundle.is_empty() {
                        return Err(Error::invalid(
                            format!("{} {}", pkg.name, pkg.version),
                            format!("has no certificates under /{MOZILLA_CERTS}"),
                        ));
                    }
                    entries.push(BaseEntry {
                        entry: LayerEntry {
                            path: CA_BUNDLE.into(),
                            mode: 0o644,
                            owner: 0,
                            kind: EntryKind::File(bundle),
                        },
                        origin: Origin::DerivedFrom {
                            package: pkg.name.clone(),
                            how: format!("every /{MOZILLA_CERTS}*.crt in byte order, as update-ca-certificates writes it"),
                        },
                    });
                    entries.push(take(&contents, &pkg, &copyright)?);
                }
                _ => entries.push(take(&contents, &pkg, &copyright)?),
            }
            packages.push(pkg);
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        let libc_arch = packages
            .iter()
            .find(|p| p.name == "libc6")
            .map(|p| p.architecture.clone())
            .unwrap_or_default();
        let a = arch(&libc_arch)?;
        let libraries = vec![
            a.loader.to_string(),
            "libc.so.6".into(),
            "libm.so.6".into(),
            "libgcc_s.so.1".into(),
        ];
        debug_assert_eq!(a.debian, libc_arch);
        Ok(DebianBase {
            distro,
            packages,
            entries,
            libraries,
        })
    }

    /// The `BASE_IMAGE` the hardening manifest names: the distribution the packages come from.
    pub fn base_image_name(&self) -> String {
        format!("debian-packages/{}", self.distro)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package the build host lacks is an error that says why dpkg-query ran, shows the
    /// command and its stderr, and says what to install.
    #[test]
    fn missing_package_names_the_command_and_the_install() {
        let test = "missing_package_names_the_command_and_the_install";
        if !distro_testsupport::require_tool(test, "dpkg-query") {
            return;
        }
        let msg = installed("distro-no-such-package")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.starts_with(
                "find the installed version the binaries were linked against: `dpkg-query -W -f "
            ),
            "{msg}"
        );
        assert!(
            msg.contains("  | dpkg-query: no packages found matching distro-no-such-package"),
            "{msg}"
        );
        assert!(
            msg.contains("help: install it: apt-get install distro-no-such-package"),
            "{msg}"
        );
    }

    /// The purl follows the purl spec for Debian (`+` percent-encoded) and carries arch/distro.
    #[test]
    fn deb_purl_encodes_version() {
        let p = DebPackage {
            name: "libc6".into(),
            version: "2.36-9+deb12u14".into(),
            architecture: "amd64".into(),
            filename: String::new(),
            url: String::new(),
            sha256: String::new(),
            size: 0,
            licenses: String::new(),
        };
        assert_eq!(
            p.purl("debian-12"),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12"
        );
    }

    /// The gcc-N-base package is found in libgcc-s1's Depends whatever N is.
    #[test]
    fn finds_gcc_base_in_depends() {
        assert_eq!(
            gcc_base("gcc-12-base (= 12.2.0-14+deb12u1), libc6 (>= 2.35)").as_deref(),
            Some("gcc-12-base")
        );
        assert_eq!(gcc_base("libc6 (>= 2.35)"), None);
    }

    /// os-release of another distribution is refused with the way out.
    #[test]
    fn non_debian_host_is_refused() {
        assert_eq!(
            host_distro("PRETTY_NAME=\"Debian\"\nID=debian\nVERSION_ID=\"12\"\n").ok(),
            Some("debian-12".to_string())
        );
        let e = host_distro("ID=fedora\nVERSION_ID=40\n")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("fedora") && e.contains("[image] base")));
    }

    /// The bundle is the certificates in byte order, each ending in a newline.
    #[test]
    fn ca_bundle_is_sorted_concatenation() {
        let mut c = BTreeMap::new();
        for (p, d) in [
            ("usr/share/ca-certificates/mozilla/b.crt", "B"),
            ("usr/share/ca-certificates/mozilla/A.crt", "A\n"),
            ("usr/share/ca-certificates/other/c.crt", "C\n"),
            ("usr/share/ca-certificates/mozilla/README", "x"),
        ] {
            c.insert(
                p.to_string(),
                (EntryKind::File(d.as_bytes().to_vec()), 0o644),
            );
        }
        assert_eq!(ca_bundle(&c), b"A\nB\n");
    }
}
