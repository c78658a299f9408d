//! `distro release`: every stage of a release, in order, each run as its own `distro` command.
//!
//! A release is the stages a user could run by hand: support check → build (patches applied,
//! FIPS evidence, provenance) → SBOMs → VEX → images → push → sign → attest → verify. Each stage
//! runs as a child `distro <stage> --format json` with the same `--config`, so a release does
//! exactly what the stages do, and since every stage is idempotent (cargo's own caching, a
//! deterministic image, no re-upload of blobs, no duplicate signature by the same key) an
//! interrupted release resumes by running it again. Stage reports are collected into
//! `OUT/<line>/release.json`; progress goes to stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::Context;
use crate::output::{self, Format};

/// Arguments of `distro release`.
#[derive(clap::Args)]
pub struct Args {
    /// Release line (default: the newest line of the distribution).
    #[arg(long, value_name = "VERSION")]
    line: Option<String>,
    /// Output directory (default: `out/` at the root of the repository holding distro.toml).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where images go: REGISTRY/NAMESPACE, e.g. 127.0.0.1:5000/fips-mesh.
    #[arg(long, value_name = "REGISTRY/NAMESPACE")]
    to: String,
    /// Signing key (PKCS#8 PEM or cosign.key); made with `distro keygen` when absent.
    #[arg(long, value_name = "PATH")]
    key: PathBuf,
    /// Public key used to verify what was pushed (default: KEY with `.pub` for its extension).
    #[arg(long, value_name = "PATH")]
    public_key: Option<PathBuf>,
    /// Release a line that has reached its end of life.
    #[arg(long)]
    force: bool,
    /// Talk plain HTTP to a registry on a loopback address.
    #[arg(long)]
    plain_http: bool,
    /// CA certificates of a registry with a private CA.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
}

struct Runner<'a> {
    exe: PathBuf,
    cx: &'a Context,
    stages: Vec<Value>,
}

impl Runner<'_> {
    /// Runs `distro <args> --format json`, says why, and returns its JSON report (or null when
    /// the stage prints none).
    fn stage(&mut self, name: &str, args: &[String]) -> anyhow::Result<Value> {
        self.cx
            .status(&format!("[release] {name}: distro {}", args.join(" ")));
        let started = Instant::now();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--config")
            .arg(&self.cx.config_path)
            .arg("--format")
            .arg("json");
        if self.cx.quiet {
            cmd.arg("--quiet");
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running the {name} stage ({})", self.exe.display()))?;
        let report: Value = if out.stdout.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&out.stdout).into_owned())
            })
        };
        let seconds = started.elapsed().as_secs_f64();
        self.stages.push(json!({
            "stage": name,
            "command": args,
            "exit": out.status.code(),
            "seconds": (seconds * 100.0).round() / 100.0,
            "report": report,
        }));
        if !out.status.success() {
            bail!(
                "release stage `{name}` failed ({}): `distro {}`; its messages are above. Fix the cause and run the release again: finished stages are not redone",
                out.status,
                args.join(" ")
            );
        }
        Ok(report)
    }
}

fn s(v: impl AsRef<std::ffi::OsStr>) -> String {
    v.as_ref().to_string_lossy().into_owned()
}

fn registry_flags(args: &Args) -> Vec<String> {
    let mut flags = Vec::new();
    if args.plain_http {
        flags.push("--plain-http".to_string());
    }
    if let Some(ca) = &args.ca_file {
        flags.push("--ca-file".into());
        flags.push(s(ca));
    }
    flags
}

/// Runs `distro release`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let dist = cx.distribution()?;
    let line = match &args.line {
        Some(v) => dist
            .line(v)
            .with_context(|| format!("no line `{v}` in {}", dist.path.display()))?,
        None => dist
            .newest_line()
            .context("the distribution has no release lines")?,
    };
    let version = line.version.clone();
    let out = args.out.clone().unwrap_or_else(|| cx.default_out());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let line_dir = out.join(&version);
    let public_key = args
        .public_key
        .clone()
        .unwrap_or_else(|| args.key.with_extension("pub"));
    let mut r = Runner {
        exe: std::env::current_exe().context("locating the distro binary")?,
        cx,
        stages: Vec::new(),
    };

    let mut check = vec![
        "matrix".to_string(),
        "--no-advisories".into(),
        "--check-release".into(),
        version.clone(),
    ];
    if args.force {
        check.push("--force".into());
    }
    r.stage("support window", &check)?;
    r.stage(
        "build",
        &[
            s("build"),
            s("--line"),
            version.clone(),
            s("--out"),
            s(&out),
        ],
    )?;
    r.stage(
        "sbom",
        &[
            s("sbom"),
            s("--out"),
            s(&out),
            s("--line"),
            version.clone(),
            s("--spdx"),
        ],
    )?;
    let vex = line_dir
        .join("vex")
        .join(format!("{}-{version}.openvex.json", dist.name));
    if let Some(parent) = vex.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let vex_report = r.stage(
        "vex",
        &[
            s("patches"),
            s("vex"),
            s("--line"),
            version.clone(),
            s("--output"),
            s(&vex),
        ],
    )?;
    // With nothing to state, `patches vex` writes no document (OpenVEX needs a statement):
    // then no VEX is attached, and the record says why.
    let vex_written = vex.is_file();
    r.stage(
        "image",
        &[
            s("image"),
            s("--line"),
            version.clone(),
            s("--out"),
            s(&out),
        ],
    )?;
    if !args.key.exists() {
        r.stage(
            "keygen",
            &[
                s("keygen"),
                s("--private"),
                s(&args.key),
                s("--public"),
                s(&public_key),
            ],
        )?;
    }
    let mut push = vec![
        s("push"),
        s("--release"),
        s(&line_dir),
        s("--to"),
        args.to.clone(),
    ];
    push.extend(registry_flags(&args));
    let pushed = r.stage("push", &push)?;
    let references: Vec<(String, String)> = pushed
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p.get("component")?.as_str()?.to_string(),
                        p.get("reference")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if references.is_empty() {
        bail!(
            "the push stage reported no images; is {} empty?",
            line_dir.join("images").display()
        );
    }
    for (component, reference) in &references {
        let mut sign = vec![s("sign"), reference.clone(), s("--key"), s(&args.key)];
        sign.extend(registry_flags(&args));
        r.stage(&format!("sign {component}"), &sign)?;
        let mut attest = vec![
            s("attest"),
            reference.clone(),
            s("--key"),
            s(&args.key),
            s("--build-dir"),
            s(&line_dir),
            s("--component"),
            component.clone(),
        ];
        if vex_written {
            attest.extend([s("--vex"), s(&vex)]);
        }
        // The image's SBOM (every file of every layer), not only the binary's.
        let image_sbom = line_dir
            .join("images")
            .join(component)
            .join("sbom.cdx.json");
        if image_sbom.is_file() {
            attest.extend([s("--sbom"), s(&image_sbom)]);
        }
        attest.extend(registry_flags(&args));
        r.stage(&format!("attest {component}"), &attest)?;
        let mut verify = vec![s("verify"), reference.clone(), s("--key"), s(&public_key)];
        verify.extend(registry_flags(&args));
        r.stage(&format!("verify {component}"), &verify)?;
    }

    let record = json!({
        "distribution": dist.name,
        "line": version,
        "registry": args.to,
        "images": references.iter().map(|(c, r)| json!({"component": c, "reference": r})).collect::<Vec<_>>(),
        "public_key": s(&public_key),
        "vex": if vex_written { json!({ "attached": true, "path": s(&vex) }) } else { json!({ "attached": false, "reason": vex_report.get("reason") }) },
        "stages": r.stages,
    });
    write_atomic(&line_dir.join("release.json"), &record)?;
    match cx.format {
        Format::Json => output::json(&record)?,
        Format::Text => {
            let mut text = format!("{} {version} released to {}\n", dist.name, args.to);
            for (c, reference) in &references {
                text.push_str(&format!(
                    "  {c:<14} {reference}  signed, attested, verified\n"
                ));
            }
            text.push_str(&format!(
                "  record: {}\n  verify with: distro verify <image> --key {}\n",
                line_dir.join("release.json").display(),
                public_key.display()
            ));
            output::data(&text);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_atomic(path: &Path, value: &Value) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().map(s).unwrap_or_default()
    ));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
