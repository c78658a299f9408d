//! `distro release`: every stage of a release, in order, each run as its own `distro` command.
//!
//! A release is the stages a user could run by hand: support check → build (patches applied,
//! FIPS evidence, provenance) → SBOMs → VEX → images → push → sign → attest → verify. Each stage
//! runs as a child `distro <stage> --format json` with the same `--config`, so a release does
//! exactly what the stages do, and since every stage is idempotent (cargo's own caching, a
//! deterministic image, no re-upload of blobs, no duplicate signature by the same key) an
//! interrupted release resumes by running it again. Stage reports are collected into
//! `OUT/<line>/release.json`; progress goes to stderr.
//!
//! Before any stage, a preflight checks what the later stages need (the tools on PATH, the
//! advisory database, the signing key, the output directory, the registry) and stops in seconds
//! with every problem and its fix, so a release never fails after a long build for a reason
//! that was knowable at the start.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

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
    let public_key = args
        .public_key
        .clone()
        .unwrap_or_else(|| args.key.with_extension("pub"));
    // Everything a later stage needs, checked before anything is written or built.
    let preflight = preflight(&args, cx, &dist, &out, &public_key)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let line_dir = out.join(&version);
    let mut r = Runner {
        exe: std::env::current_exe().context("locating the distro binary")?,
        cx,
        stages: vec![preflight],
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

/// One preflight check: what, whether it holds, and the detail (the fix when it does not).
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// Tools the stages run, and how to get each.
const TOOLS: &[(&str, &str, &str)] = &[
    (
        "cargo",
        "builds the components",
        "install a Rust toolchain (rustup or Debian's cargo)",
    ),
    (
        "git",
        "resolves and exports the line's source",
        "apt-get install git",
    ),
    (
        "cmake",
        "builds the AWS-LC FIPS module",
        "apt-get install cmake",
    ),
    (
        "go",
        "builds the AWS-LC FIPS module",
        "apt-get install golang-go",
    ),
    (
        "cc",
        "compiles the AWS-LC FIPS module",
        "apt-get install gcc",
    ),
];

/// Checks everything the later stages need; fails listing every problem and its fix.
fn preflight(
    args: &Args,
    cx: &Context,
    dist: &distro_config::Distribution,
    out: &Path,
    public_key: &Path,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    cx.status("[release] preflight: tools, advisory database, signing key, output, registry");
    let mut checks = Vec::new();
    for (tool, why, fix) in TOOLS {
        checks.push(match on_path(tool) {
            Some(p) => Check {
                name: "tool",
                ok: true,
                detail: format!("{tool}: {}", p.display()),
            },
            None => Check {
                name: "tool",
                ok: false,
                detail: format!(
                    "`{tool}` is not on PATH (it {why}); {fix}, or run scripts/install-deps.sh"
                ),
            },
        });
    }
    checks.push(check_advisory_db(cx, dist));
    checks.push(check_key(&args.key, public_key));
    checks.push(check_writable("output directory", out));
    checks.push(check_registry(&args.to, args.plain_http));

    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    let report = json!({
        "stage": "preflight",
        "exit": if failed.is_empty() { 0 } else { 1 },
        "seconds": (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        "report": checks.iter().map(|c| json!({"check": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
    });
    if !failed.is_empty() {
        let list: Vec<String> = failed
            .iter()
            .map(|c| format!("  - {}: {}", c.name, c.detail.replace('\n', "\n    ")))
            .collect();
        bail!(
            "release preflight: {} problem(s), nothing was built:\n{}",
            failed.len(),
            list.join("\n")
        );
    }
    Ok(report)
}

/// The first executable `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The advisory database the VEX stage reads: present, and every advisory parses.
fn check_advisory_db(cx: &Context, dist: &distro_config::Distribution) -> Check {
    match cx.advisory_db(None, Some(dist)) {
        Ok((_, snap)) => Check {
            name: "advisory database",
            ok: true,
            detail: format!(
                "{}, {} advisories{}",
                snap.label(),
                snap.advisories,
                if snap.stale {
                    " (stale: see the warning above)"
                } else {
                    ""
                }
            ),
        },
        Err(e) => Check {
            name: "advisory database",
            ok: false,
            detail: format!("{e:#}"),
        },
    }
}

/// The signing key: readable when it exists (with its public key), else its directory must
/// take the key `distro keygen` writes.
fn check_key(key: &Path, public_key: &Path) -> Check {
    let name = "signing key";
    if key.exists() {
        if let Err(e) = std::fs::File::open(key) {
            return Check {
                name,
                ok: false,
                detail: format!(
                    "{} exists but cannot be read: {e}; fix its permissions or pass another --key",
                    key.display()
                ),
            };
        }
        if !public_key.is_file() {
            return Check {
                name,
                ok: false,
                detail: format!(
                    "{} exists but its public key {} does not, so the verify stage could not check the images; pass --public-key PATH, or move the key away to have a new pair made",
                    key.display(),
                    public_key.display()
                ),
            };
        }
        return Check {
            name,
            ok: true,
            detail: format!("{} (public key {})", key.display(), public_key.display()),
        };
    }
    let dir = key
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let w = check_writable(name, dir);
    Check {
        detail: if w.ok {
            format!(
                "{} will be made by `distro keygen` ({})",
                key.display(),
                w.detail
            )
        } else {
            format!(
                "{} does not exist and cannot be made: {}",
                key.display(),
                w.detail
            )
        },
        ..w
    }
}

/// Whether files can be created in `dir` (or in the nearest existing directory above it,
/// which the stages create it under).
fn check_writable(name: &'static str, dir: &Path) -> Check {
    let Some(existing) = dir.ancestors().find(|a| a.is_dir()) else {
        return Check {
            name,
            ok: false,
            detail: format!("no existing directory above {}", dir.display()),
        };
    };
    let probe = existing.join(format!(".distro-preflight-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Check { name, ok: true, detail: format!("{} is writable", existing.display()) }
        }
        Err(e) => Check {
            name,
            ok: false,
            detail: format!("cannot write in {}: {e}; choose a writable place (--out DIR / --key PATH) or fix the permissions", existing.display()),
        },
    }
}

/// The registry answers `GET /v2/` (200, or 401 when it wants credentials). Over TLS only the
/// connection is checked here; the push stage checks the certificate.
fn check_registry(to: &str, plain_http: bool) -> Check {
    let name = "registry";
    let host = to.split('/').next().unwrap_or_default();
    let addr = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:{}", if plain_http { 80 } else { 443 })
    };
    let start_hint =
        "start it (scripts/release-local.sh starts a local one on 127.0.0.1), or fix --to";
    let addrs: Vec<_> = match addr.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            return Check {
                name,
                ok: false,
                detail: format!("cannot resolve {addr} (from --to {to}): {e}; {start_hint}"),
            }
        }
    };
    let Some(stream) = addrs
        .iter()
        .find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(3)).ok())
    else {
        return Check {
            name,
            ok: false,
            detail: format!("nothing is listening at {addr} (from --to {to}); {start_hint}"),
        };
    };
    if !plain_http {
        return Check {
            name,
            ok: true,
            detail: format!("{addr} accepts connections (TLS is checked by the push stage)"),
        };
    }
    match http_status(stream, host) {
        Ok(code) if code == 200 || code == 401 => Check { name, ok: true, detail: format!("GET http://{host}/v2/: {code}") },
        Ok(code) => Check {
            name,
            ok: false,
            detail: format!("GET http://{host}/v2/ answered {code}, not an OCI registry's 200 or 401; is --to pointing at a registry?"),
        },
        Err(e) => Check { name, ok: false, detail: format!("GET http://{host}/v2/ failed: {e}; {start_hint}") },
    }
}

/// The status code of `GET /v2/` on an open connection.
fn http_status(mut stream: TcpStream, host: &str) -> std::io::Result<u16> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    // One write: a server may answer (and close) as soon as it has the request line.
    let request = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: distro-preflight\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    text.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "not an HTTP answer: {:?}",
                text.lines().next().unwrap_or_default()
            ))
        })
}
