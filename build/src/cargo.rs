//! The cargo invocation: release mode, `--locked`, the component's exact feature set, and the
//! settings that make two builds of the same source bit-identical.
//!
//! Reproducibility comes from: `SOURCE_DATE_EPOCH` = the commit time; `--remap-path-prefix`
//! (Rust) and `-ffile-prefix-map` (C, for the AWS-LC module built by cmake) mapping the source
//! tree, the target directory and the cargo home to fixed names; incremental compilation off;
//! and an exported tree (no `.git`), so nothing depends on where the output directory is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use distro_config::Component;

use crate::fsutil;
use crate::source::ExportedSource;
use crate::target::Target;
use crate::BuildError;
use distro_hostio::Cmd;

/// Versions of the tools that take part in a build (recorded in provenance).
#[derive(Debug, Clone, Default)]
pub struct Toolchain {
    /// Tool → version line.
    pub versions: BTreeMap<String, String>,
    /// Host target triple.
    pub host: String,
}

impl Toolchain {
    /// Asks each tool for its version. rustc and cargo are required; cmake, go and cc are
    /// recorded when present (the FIPS module's build fails later, clearly, without them).
    pub fn detect() -> Result<Self, BuildError> {
        let rustc = Cmd::new("rustc", "record the Rust compiler version")
            .help("install a Rust toolchain (rustup)")
            .arg("-vV")
            .stdout_text()?;
        let host = rustc
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .unwrap_or_default()
            .to_string();
        let mut versions = BTreeMap::new();
        versions.insert(
            "rustc".to_string(),
            rustc.lines().next().unwrap_or_default().to_string(),
        );
        if let Some(commit) = rustc.lines().find_map(|l| l.strip_prefix("commit-hash: ")) {
            versions.insert("rustc-commit".to_string(), commit.to_string());
        }
        let cargo = Cmd::new("cargo", "record the cargo version")
            .arg("-V")
            .stdout_text()?;
        versions.insert("cargo".to_string(), cargo);
        for (tool, args) in [
            ("cmake", "--version"),
            ("go", "version"),
            ("cc", "--version"),
        ] {
            if let Ok(v) = Cmd::new(tool, "record a build tool's version")
                .arg(args)
                .stdout_text()
            {
                versions.insert(
                    tool.to_string(),
                    v.lines().next().unwrap_or_default().to_string(),
                );
            }
        }
        Ok(Toolchain { versions, host })
    }
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The binary, copied to `OUT/<line>/bin/`.
    pub binary: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// The exact command, with the environment it set.
    pub command: Vec<String>,
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// The cargo arguments for one component.
pub fn cargo_args(component: &Component) -> Vec<String> {
    let mut args = vec![
        "build".to_string(),
        "--release".into(),
        "--locked".into(),
        "--package".into(),
        component.package.clone(),
        "--bin".into(),
        component.binary.clone(),
        "--no-default-features".into(),
    ];
    if !component.features.is_empty() {
        args.push("--features".into());
        args.push(
            component
                .features
                .iter()
                .map(|f| format!("{}/{f}", component.package))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    args
}

/// Builds one component of an exported source in `target` (`line_dir/target`, locked by the
/// caller for the line) and copies its binary to `line_dir/bin/`.
pub fn build_component(
    src: &ExportedSource,
    component: &Component,
    line_dir: &Path,
    target: &Target,
    show_output: bool,
) -> Result<Built, BuildError> {
    let target = &target.dir;
    let home = cargo_home();
    let tree = &src.tree;
    let rustflags = [
        format!("--remap-path-prefix={}=/build/src", tree.display()),
        format!("--remap-path-prefix={}=/build/target", target.display()),
        format!("--remap-path-prefix={}=/cargo", home.display()),
    ]
    .join("\x1f");
    let cflags = format!(
        "-ffile-prefix-map={}=/build/src -ffile-prefix-map={}=/build/target -ffile-prefix-map={}=/cargo",
        tree.display(),
        target.display(),
        home.display()
    );
    let args = cargo_args(component);
    let epoch = src.source_date_epoch.to_string();
    let mut cmd = Cmd::new("cargo", format!("build component `{}`", component.name));
    cmd.help("install a Rust toolchain; the FIPS module also needs cmake, go and a C compiler")
        .args(&args)
        .cwd(tree)
        .env("CARGO_TARGET_DIR", target)
        .env("SOURCE_DATE_EPOCH", &epoch)
        .env("CARGO_ENCODED_RUSTFLAGS", &rustflags)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env("CARGO_INCREMENTAL", "0")
        .env("CFLAGS", &cflags)
        .env("CXXFLAGS", &cflags)
        .env("ASMFLAGS", &cflags);
    let mut command = vec![
        format!("SOURCE_DATE_EPOCH={epoch}"),
        "CARGO_TARGET_DIR=/build/target".into(),
        "CARGO_ENCODED_RUSTFLAGS=--remap-path-prefix=<src>=/build/src\x1f--remap-path-prefix=<target>=/build/target\x1f--remap-path-prefix=<cargo-home>=/cargo".replace('\x1f', " "),
        "CFLAGS=-ffile-prefix-map=<src>=/build/src -ffile-prefix-map=<target>=/build/target -ffile-prefix-map=<cargo-home>=/cargo".into(),
        "CARGO_INCREMENTAL=0".into(),
        "cargo".into(),
    ];
    command.extend(args.iter().cloned());
    cmd.run_streaming(!show_output)?;

    let built = target.join("release").join(&component.binary);
    let dest = line_dir.join("bin").join(&component.binary);
    fsutil::copy_atomic(&built, &dest)?;
    embed_dependency_list(tree, component, &dest)?;
    let sha256 = distro_hostio::sha256_file(&dest).map_err(fsutil::io("hashing", &dest))?;
    Ok(Built {
        binary: dest,
        sha256,
        command,
    })
}

/// Embeds the binary's exact dependency list in the cargo-auditable format (section `.dep-v0`),
/// so `distro sbom --from-binary` can recover an SBOM from the shipped binary alone. This runs
/// after linking and before hashing and evidence: the evidence is about the binary as shipped.
fn embed_dependency_list(
    tree: &Path,
    component: &Component,
    binary: &Path,
) -> Result<(), BuildError> {
    let sbom_error = |e: distro_sbom::SbomError| BuildError::Binary {
        path: binary.to_path_buf(),
        message: format!("embedding the dependency list (.dep-v0): {e}"),
    };
    let graph = distro_sbom::graph::resolve(
        tree,
        &component.package,
        &component.binary,
        &component.features,
        true,
    )
    .map_err(sbom_error)?;
    distro_sbom::auditable::embed(binary, &distro_sbom::auditable::DepList::from_graph(&graph))
        .map_err(sbom_error)
}
