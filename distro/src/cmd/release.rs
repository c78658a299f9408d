//! `distro release`: every stage of a release, in process, for one line or every line.
//!
//! A release of a line is the stages a user could run by hand, called through the same entry
//! points: support check → build (patches applied, FIPS evidence, provenance;
//! [`super::build::build`]) → SBOMs ([`super::sbom::sbom`], with the features the build record
//! names) → VEX → dependency policy (cargo-deny with the repository's deny.toml on the exported
//! source; an advisory the line's VEX states `not_affected` or `fixed` is accepted with that
//! statement, any other denial is a policy refusal) → images ([`super::image::image`]) → push
//! by digest → sign → attest → verify → tag. The definition is read once and the records flow from stage to stage as one typed
//! [`LineRelease`], written atomically as `OUT/<line>/release.json` (0644) after the local
//! stages and after every publishing step.
//!
//! Publishing is safe against a kill at any point: images go to the registry by digest only,
//! are signed and attested by digest, verified, and only then is the tag moved to the digest,
//! so a tag never names an unsigned or unattested image. Signing and attesting add nothing
//! that the key already attached (see `distro_images::cosign`), so a resumed release adds no
//! duplicate. The record's fingerprint covers everything the local stages read; a second run
//! with the same fingerprint, intact artifacts and a registry that still holds the verified,
//! tagged images does nothing and says so.
//!
//! Before any stage, a preflight checks what the later stages need (the tools on PATH, the
//! advisory database, the signing key, the output directory, the registry) and stops in seconds
//! with every problem and its fix, so a release never fails after a long build for a reason
//! that was knowable at the start.
//!
//! Test hook: `DISTRO_TEST_KILL_AFTER=STEP` (`local`, `push`, `sign`, `attest`, `conformance`, `verify`, `tag`,
//! or `STEP:COMPONENT`) makes the process SIGKILL itself right after that step, as a crash
//! would; the kill tests use it to check what a registry holds after each point.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use distro_images::keys::{SigningKey, VerifyingKey};
use distro_images::registry::{Registry, RegistryOptions};
use distro_images::store::{Layout, Store};
use distro_images::{cosign, transfer, verify};
use distro_patches::advisory::AdvisoryDb;
use distro_patches::matrix::{self, ReleaseCheck, Status};
use distro_patches::snapshot::Snapshot;
use distro_schema::{
    self as schema, Artifact, CheckResult, ComponentRelease, LineRelease, Pushed, ReleaseState,
    StageTiming,
};

use super::record::{self, artifact, at, intact, layout_digest};
use super::Context;
use crate::output::{self, Format, Progress, Refusal};

/// Arguments of `distro release`.
#[derive(clap::Args)]
pub struct Args {
    /// Release line (default: the newest line of the distribution).
    #[arg(long, value_name = "VERSION", conflicts_with = "all")]
    line: Option<String>,
    /// Release every line of the distribution, oldest first (a line past its end of life is
    /// refused unless --force).
    #[arg(long)]
    all: bool,
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
    /// Do not build: release the build already in OUT/<line>/build.json (e.g. made by an
    /// earlier CI job); its binaries are checked against the record first.
    #[arg(long)]
    reuse_build: bool,
    /// Where the Debian base's verified `.deb`s are kept (default: OUT/base/debian).
    #[arg(long, value_name = "DIR")]
    base_cache: Option<PathBuf>,
    /// Talk plain HTTP to a registry on a loopback address.
    #[arg(long)]
    plain_http: bool,
    /// CA certificates of a registry with a private CA.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Whether the conformance suite runs before the tags move: `auto` runs it when root
    /// (it needs network namespaces) and records "not run" otherwise, `required` makes not
    /// being root an error, `off` skips it.
    #[arg(long, default_value = "auto", value_name = "required|auto|off")]
    conformance: distro_conformance::stage::Mode,
}

/// The stages of a line, in order: the progress display counts them.
const STAGES: &[&str] = &[
    "build",
    "sbom",
    "vex",
    "policy",
    "image",
    "push",
    "sign",
    "attest",
    "conformance",
    "verify",
    "tag",
];

/// The first `LOCAL` of [`STAGES`] run on this machine only (build to image); the rest publish.
const LOCAL: usize = 5;

/// The distribution's dependency policy: its `deny.toml` and the advisory database laid out
/// for cargo-deny, prepared once for every line of the run.
struct DependencyPolicy {
    deny_toml: PathBuf,
    db: distro_sbom::policy::AdvisoryDb,
}

/// What the line's VEX states of each advisory it names, by id and by alias: (status, why).
type VexStatuses = BTreeMap<String, (String, String)>;

/// Everything that is the same for every line of a run: read or made once.
struct Run<'a> {
    cx: &'a Context,
    dist: &'a distro_config::Distribution,
    args: &'a Args,
    out: PathBuf,
    key: SigningKey,
    public_key: VerifyingKey,
    public_key_artifact: Artifact,
    db: AdvisoryDb,
    snapshot: Snapshot,
    /// `None` when the repository holding distro.toml has no deny.toml (recorded as skipped).
    policy: Option<DependencyPolicy>,
    registry: RegistryOptions,
    progress: Progress,
    /// sha256 of the running `distro` binary: a new tool redoes the local stages.
    tool_sha256: String,
}

/// Runs `distro release`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let dist = cx.distribution()?;
    let lines = select_lines(&args, &dist)?;
    let out = args.out.clone().unwrap_or_else(|| cx.default_out());
    let public_key = args
        .public_key
        .clone()
        .unwrap_or_else(|| args.key.with_extension("pub"));

    // The support window first: a refused line stops the run before anything is checked,
    // built or written.
    let today = super::today();
    let mut support = Vec::new();
    for line in &lines {
        support.push(support_check(&dist, line, today, args.force)?);
    }
    // Everything a later stage needs, checked before anything is written or built.
    let (preflight, db, snapshot) = preflight(&args, cx, &dist, &out, &public_key)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if !args.key.exists() {
        cx.status(&format!(
            "[release] keygen: no key at {}, making a new pair ({} and {})",
            args.key.display(),
            args.key.display(),
            public_key.display()
        ));
        let key = SigningKey::generate()?;
        distro_images::keys::write_key_pair(&key, &args.key, &public_key, false)?;
    }
    let key = super::sign::load_key(&args.key)?;
    let verifying = VerifyingKey::load(&public_key)?;
    anyhow::ensure!(
        verifying.keyid() == key.keyid(),
        "the public key {} is not the public half of {}: pass the matching --public-key",
        public_key.display(),
        args.key.display()
    );
    let exe = std::env::current_exe().context("locating the distro binary")?;
    let deny_toml = super::policy::default_deny_toml(cx);
    let policy = if deny_toml.is_file() {
        let urls = distro_sbom::policy::db_urls(&deny_toml)?;
        Some(DependencyPolicy {
            db: distro_sbom::policy::AdvisoryDb::prepare(&snapshot.path, &urls)?,
            deny_toml,
        })
    } else {
        cx.warn(&format!(
            "no dependency policy at {}: the policy stage records the lines as not checked against licences, bans, sources and advisories",
            deny_toml.display()
        ));
        None
    };
    let run = Run {
        cx,
        dist: &dist,
        args: &args,
        out,
        public_key_artifact: artifact(&public_key)?,
        key,
        public_key: verifying,
        db,
        snapshot,
        policy,
        registry: RegistryOptions {
            ca_file: args.ca_file.clone(),
            plain_http: args.plain_http,
            ..RegistryOptions::default()
        },
        progress: Progress::new((lines.len() * STAGES.len()) as u64, cx.quiet),
        tool_sha256: super::sha256_of(&exe)?,
    };

    let mut records = Vec::new();
    for (line, support) in lines.iter().zip(support) {
        let mut checks = preflight.clone();
        checks.push(support);
        let record = run
            .line(line, checks)
            .with_context(|| format!("releasing line {}", line.version))?;
        records.push(record);
    }
    drop(run.progress);

    match cx.format {
        Format::Json => output::json(&records)?,
        Format::Text => {
            let mut text = String::new();
            for r in &records {
                let unchanged = r.stages.iter().all(|s| s.skipped);
                text.push_str(&format!(
                    "{} {} ({}) {} {}\n",
                    r.distribution,
                    r.line,
                    r.version,
                    if unchanged {
                        "already released, nothing changed:"
                    } else {
                        "released to"
                    },
                    r.registry.as_deref().unwrap_or_default()
                ));
                for c in &r.components {
                    if let Some(p) = &c.pushed {
                        text.push_str(&format!(
                            "  {:<14} {}:{}  {}  signed, attested, verified\n",
                            c.name, p.repository, p.tag, p.digest
                        ));
                    }
                }
                text.push_str(&format!(
                    "  record: {}\n",
                    run_line_dir(&args, cx, &r.line)
                        .join("release.json")
                        .display()
                ));
            }
            text.push_str(&format!(
                "verify with: distro verify <image> --key {}\n",
                public_key.display()
            ));
            output::data(&text);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_line_dir(args: &Args, cx: &Context, line: &str) -> PathBuf {
    args.out
        .clone()
        .unwrap_or_else(|| cx.default_out())
        .join(line)
}

/// The lines to release: `--all` (oldest first), `--line`, else the newest.
fn select_lines<'d>(
    args: &Args,
    dist: &'d distro_config::Distribution,
) -> anyhow::Result<Vec<&'d distro_config::Line>> {
    if args.all {
        let mut lines: Vec<&distro_config::Line> = dist.lines.iter().collect();
        lines.sort_by(|a, b| a.semver.cmp(&b.semver));
        anyhow::ensure!(
            !lines.is_empty(),
            "{} defines no release lines",
            dist.path.display()
        );
        return Ok(lines);
    }
    let line = super::select_line(dist, args.line.as_deref())?;
    Ok(vec![line])
}

/// The support window: a line past its end of life is a policy refusal (exit 3) unless forced.
fn support_check(
    dist: &distro_config::Distribution,
    line: &distro_config::Line,
    today: distro_patches::chrono::NaiveDate,
    force: bool,
) -> anyhow::Result<schema::Check> {
    let (eol, _, status) = matrix::line_status(dist, line, today);
    if status == Status::EndOfLife && !force {
        return Err(anyhow::Error::new(Refusal(format!(
            "line {} reached its end of life on {eol}; releasing it is refused (nothing was built)\n  help: release the supported lines with --line VERSION, extend the line's `eol` in {}, or pass --force to release it anyway",
            line.version,
            dist.path.display()
        ))));
    }
    let detail = match matrix::check_release(dist, line, today, force)? {
        ReleaseCheck::Ok => format!("line {} is supported until {eol}", line.version),
        ReleaseCheck::Warn(w) => w,
    };
    Ok(schema::Check {
        stage: "support".into(),
        name: "support window".into(),
        result: CheckResult::Passed,
        detail,
    })
}

/// The test-only crash hook: with `DISTRO_TEST_KILL_AFTER` naming this step (or
/// `STEP:COMPONENT`), the process kills itself with SIGKILL, as a crash or an OOM kill would:
/// nothing after this point runs, nothing is flushed or cleaned up.
fn kill_point(step: &str, component: Option<&str>) {
    let Ok(want) = std::env::var("DISTRO_TEST_KILL_AFTER") else {
        return;
    };
    let here = match component {
        Some(c) => want == step || want == format!("{step}:{c}"),
        None => want == step,
    };
    if here {
        let pid = std::process::id().to_string();
        let _ =
            distro_hostio::Cmd::new("kill", "the test-only crash hook (DISTRO_TEST_KILL_AFTER)")
                .args(["-KILL", &pid])
                .output();
        // Should kill(1) be missing, abort: still no unwinding, no cleanup.
        std::process::abort();
    }
}

/// sha256 of every file under `dir` (relative names and contents), sorted; empty when absent.
fn tree_digest(dir: &Path, into: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        into.extend_from_slice(rel.to_string_lossy().as_bytes());
        into.push(0);
        into.extend_from_slice(super::sha256_of(&f)?.as_bytes());
        into.push(b'\n');
    }
    Ok(())
}

impl Run<'_> {
    /// The fingerprint of everything the local stages of `line` read, or `None` when the
    /// line's source ref cannot be resolved here (then nothing is reused).
    fn fingerprint(
        &self,
        line: &distro_config::Line,
        line_dir: &Path,
    ) -> anyhow::Result<Option<String>> {
        // A ref that does not resolve here (a remote source not yet mirrored) is no error:
        // nothing is reused, and the build stage resolves it with a full diagnostic.
        let commit =
            distro_hostio::Cmd::git("resolve the line's source ref for the release fingerprint")
                .args([
                    "-C",
                    &line.source.git,
                    "rev-parse",
                    "--verify",
                    "--end-of-options",
                ])
                .arg(format!("{}^{{commit}}", line.source.git_ref))
                .stdout_text()
                .ok();
        let Some(commit) = commit else {
            return Ok(None);
        };
        let mut h = Vec::new();
        for part in [
            "distro release v1",
            &line.version,
            &commit,
            &self.snapshot.label(),
            &self.tool_sha256,
        ] {
            h.extend_from_slice(part.as_bytes());
            h.push(0);
        }
        h.extend_from_slice(
            &std::fs::read(&self.dist.path)
                .with_context(|| format!("reading {}", self.dist.path.display()))?,
        );
        if let Some(p) = &line.patches {
            tree_digest(p, &mut h)?;
        }
        if let Some(policy) = &self.policy {
            h.extend_from_slice(b"policy\0");
            h.extend_from_slice(
                &std::fs::read(&policy.deny_toml)
                    .with_context(|| format!("reading {}", policy.deny_toml.display()))?,
            );
        }
        if self.args.reuse_build {
            h.extend_from_slice(b"reuse-build\0");
            let b = line_dir.join("build.json");
            h.extend_from_slice(&std::fs::read(&b).with_context(|| {
                format!(
                    "reading {} (--reuse-build releases an existing build: run `distro build --line {}` first)",
                    b.display(),
                    line.version
                )
            })?);
        }
        Ok(Some(distro_images::digest::sha256_hex(&h)))
    }

    /// Releases one line: the local stages unless the record shows them done with the same
    /// fingerprint, then the publishing stages unless the registry already holds the result.
    fn line(
        &self,
        line: &distro_config::Line,
        mut checks: Vec<schema::Check>,
    ) -> anyhow::Result<LineRelease> {
        let cx = self.cx;
        let v = &line.version;
        let line_dir = self.out.join(v);
        std::fs::create_dir_all(&line_dir)
            .with_context(|| format!("creating {}", line_dir.display()))?;
        let record_path = line_dir.join("release.json");
        let fingerprint = self.fingerprint(line, &line_dir)?;
        let previous = previous_record(cx, &record_path);
        let reusable = previous
            .filter(|p| fingerprint.as_deref() == Some(p.fingerprint.as_str()) && local_intact(p));

        let mut record = match reusable {
            Some(mut p) => {
                for s in &STAGES[..LOCAL] {
                    self.progress.start(v, s);
                    self.progress.done(v, s, true, 0);
                }
                p.stages = STAGES[..LOCAL]
                    .iter()
                    .map(|s| StageTiming {
                        stage: (*s).into(),
                        duration_ms: 0,
                        skipped: true,
                    })
                    .collect();
                checks.push(schema::Check {
                    stage: "build".into(),
                    name: "local artifacts".into(),
                    result: CheckResult::Passed,
                    detail: format!(
                        "unchanged since the recorded run (fingerprint {}); every artifact's sha256 checked",
                        &p.fingerprint[..12]
                    ),
                });
                p.checks = checks;
                p
            }
            None => {
                let r =
                    self.local_stages(line, &line_dir, fingerprint.unwrap_or_default(), checks)?;
                record::write(&record_path, &r)?;
                r
            }
        };
        kill_point("local", None);

        if self.published_intact(&record)? {
            for s in &STAGES[LOCAL..] {
                self.progress.start(v, s);
                self.progress.done(v, s, true, 0);
                record.stages.push(StageTiming {
                    stage: (*s).into(),
                    duration_ms: 0,
                    skipped: true,
                });
            }
            record.checks.push(schema::Check {
                stage: "publish".into(),
                name: "registry".into(),
                result: CheckResult::Passed,
                detail: format!(
                    "every image is in {} under its tag, signed, attested and verified with this key: nothing to do",
                    self.args.to
                ),
            });
            cx.status(&format!(
                "[release {v}] nothing changed: line {v} is already released to {} and verifies; nothing was done",
                self.args.to
            ));
            record::write(&record_path, &record)?;
            return Ok(record);
        }
        self.publish(&mut record, &record_path)?;
        Ok(record)
    }

    /// Build, SBOM, VEX and image stages: the record with `state: built`.
    fn local_stages(
        &self,
        line: &distro_config::Line,
        line_dir: &Path,
        fingerprint: String,
        mut checks: Vec<schema::Check>,
    ) -> anyhow::Result<LineRelease> {
        let cx = self.cx;
        let v = &line.version;
        let mut stages = Vec::new();
        let mut timed = |stage: &str, started: Instant| {
            let ms = started.elapsed().as_millis() as u64;
            self.progress.done(v, stage, false, ms);
            stages.push(StageTiming {
                stage: stage.into(),
                duration_ms: ms,
                skipped: false,
            });
        };

        // Build.
        self.progress.start(v, "build");
        let t = Instant::now();
        let build_path = line_dir.join("build.json");
        let build = if self.args.reuse_build {
            let b = super::sbom::read_build_record(&build_path)?;
            for c in &b.components {
                let bin = &at(line_dir, &c.binary);
                let sha = super::sha256_of(bin)?;
                anyhow::ensure!(
                    sha == c.sha256,
                    "{} has sha256 {sha} but {} records {}: the binary changed after the build; rebuild the line (without --reuse-build)",
                    bin.display(),
                    build_path.display(),
                    c.sha256
                );
                let required = self.dist.component(&c.name).is_none_or(|k| k.fips_required);
                if required && !c.fips.mode {
                    return Err(anyhow::Error::new(Refusal(format!(
                        "component {} of {} is not in FIPS mode (see {}); a FIPS release refuses it",
                        c.name,
                        build_path.display(),
                        c.evidence
                    ))));
                }
            }
            checks.push(schema::Check {
                stage: "build".into(),
                name: "reused build".into(),
                result: CheckResult::Passed,
                detail: format!(
                    "{}: every binary matches its recorded sha256",
                    build_path.display()
                ),
            });
            b
        } else {
            super::build::build(
                cx,
                self.dist,
                line,
                &self.out,
                !cx.quiet && !self.progress.has_bar(),
            )?
        };
        for c in &build.components {
            checks.push(schema::Check {
                stage: "build".into(),
                name: format!("FIPS {}", c.name),
                result: if c.fips.mode {
                    CheckResult::Passed
                } else {
                    CheckResult::Failed
                },
                detail: format!(
                    "{}, CMVP {} ({}), from the binary's evidence {}",
                    c.fips.module_version,
                    c.fips
                        .cmvp_certificate
                        .map_or("-".to_string(), |n| format!("#{n}")),
                    c.fips.cmvp_status.as_str(),
                    c.evidence
                ),
            });
        }
        timed("build", t);

        // SBOMs, with the features the build record names.
        self.progress.start(v, "sbom");
        let t = Instant::now();
        let sboms = super::sbom::sbom(
            cx,
            &build,
            &build_path,
            Some(self.dist),
            &super::sbom::SbomOptions {
                components: &[],
                spdx: true,
                source_date_epoch: None,
            },
        )?;
        timed("sbom", t);

        // VEX of the line, judged against the advisory database loaded once by the preflight.
        self.progress.start(v, "vex");
        let t = Instant::now();
        let (vex, vex_note, vex_statuses) = self.vex(line, line_dir)?;
        timed("vex", t);

        // The dependency policy, on the exported source the build compiled.
        self.progress.start(v, "policy");
        let t = Instant::now();
        self.policy(line_dir, &build, &vex_statuses, &mut checks)?;
        timed("policy", t);

        // Images, each on the SBOM stage's document.
        self.progress.start(v, "image");
        let t = Instant::now();
        let binary_sboms: BTreeMap<String, Artifact> = sboms
            .iter()
            .filter_map(|w| {
                Some((
                    w.component.clone(),
                    Artifact {
                        path: w.cyclonedx.clone()?,
                        sha256: w.cyclonedx_sha256.clone()?,
                    },
                ))
            })
            .collect();
        let image_args = super::image::Args {
            line: Some(v.clone()),
            out: Some(self.out.clone()),
            components: Vec::new(),
            base_cache: self.args.base_cache.clone(),
            licenses: "Apache-2.0".into(),
            image_version: None,
            namespace: None,
            resource_url: None,
            maintainer: None,
            // A `[image] base` pinned by digest is read from the registry with the options
            // of this release.
            registry: super::push::RegistryArgs {
                ca_file: self.args.ca_file.clone(),
                plain_http: self.args.plain_http,
                attempts: 5,
                ..Default::default()
            },
        };
        let images = super::image::image(
            cx,
            self.dist,
            line,
            &build,
            line_dir,
            &image_args,
            &binary_sboms,
        )?;
        timed("image", t);

        let mut record = record::after_build(
            line.latest.as_deref(),
            &build,
            line_dir,
            fingerprint,
            checks,
        )?;
        record::set_sboms(&mut record, &sboms);
        record::set_images(&mut record, &images);
        record.vex = vex;
        record.vex_note = vex_note;
        record.stages = stages;
        Ok(record)
    }

    /// The VEX stage: the line's OpenVEX document at `OUT/<line>/vex/<dist>-<line>.openvex.json`,
    /// or why there is none, and what it states of each advisory (for the policy stage).
    fn vex(
        &self,
        line: &distro_config::Line,
        line_dir: &Path,
    ) -> anyhow::Result<(Option<Artifact>, Option<String>, VexStatuses)> {
        let path = line_dir
            .join("vex")
            .join(format!("{}-{}.openvex.json", self.dist.name, line.version));
        let outcome = distro_patches::flows::vex_line(
            self.dist,
            line,
            None,
            &[],
            &self.db,
            &cargo_home()?,
            distro_patches::chrono::Utc::now(),
        )
        .with_context(|| format!("writing the VEX document of line {}", line.version))?;
        match outcome.document {
            Some(mut doc) => {
                doc.tooling = format!("{}; advisories: {}", doc.tooling, self.snapshot.label());
                let text = serde_json::to_string_pretty(&doc)? + "\n";
                distro_hostio::write_atomic(&path, text.as_bytes(), distro_hostio::PUBLIC)?;
                let mut statuses = VexStatuses::new();
                for st in &doc.statements {
                    let why = st
                        .justification
                        .clone()
                        .or_else(|| st.status_notes.clone())
                        .or_else(|| st.impact_statement.clone())
                        .unwrap_or_default();
                    for id in
                        std::iter::once(&st.vulnerability.name).chain(&st.vulnerability.aliases)
                    {
                        statuses.insert(id.clone(), (st.status.clone(), why.clone()));
                    }
                }
                Ok((Some(artifact(&path)?), None, statuses))
            }
            None => {
                if path.exists() {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing the stale {}", path.display()))?;
                }
                Ok((
                    None,
                    Some(outcome.reason.unwrap_or_default()),
                    VexStatuses::new(),
                ))
            }
        }
    }

    /// The policy stage: cargo-deny's licence, ban, source and advisory checks of every
    /// component in the line's exported (patched) source, with the features it was built with,
    /// the distribution's deny.toml and the release's advisory snapshot. An advisory that the
    /// line's VEX states `not_affected` or `fixed` is accepted with that statement (recorded in
    /// the check); any other denial refuses the line (exit 3) before an image is assembled.
    fn policy(
        &self,
        line_dir: &Path,
        build: &schema::BuildRecord,
        vex: &VexStatuses,
        checks: &mut Vec<schema::Check>,
    ) -> anyhow::Result<()> {
        let Some(policy) = &self.policy else {
            checks.push(schema::Check {
                stage: "policy".into(),
                name: "dependency policy".into(),
                result: CheckResult::Skipped,
                detail: format!(
                    "not run: no deny.toml at {}",
                    super::policy::default_deny_toml(self.cx).display()
                ),
            });
            return Ok(());
        };
        let src = line_dir.join("src");
        let mut denied = Vec::new();
        for c in &build.components {
            let features = match &c.features {
                Some(f) => f.clone(),
                None => self
                    .dist
                    .component(&c.name)
                    .map(|k| k.features.clone())
                    .unwrap_or_default(),
            };
            let report = super::policy::check_component(
                &super::policy::Target {
                    name: &c.name,
                    source: &src,
                    package: &c.package,
                    features,
                },
                &policy.deny_toml,
                &policy.db,
                Path::new("cargo-deny"),
                None,
            )?;
            let verdict = judge(&report, vex);
            checks.push(schema::Check {
                stage: "policy".into(),
                name: format!("dependency policy {}", c.name),
                result: if verdict.denied.is_empty() {
                    CheckResult::Passed
                } else {
                    CheckResult::Failed
                },
                detail: verdict.detail(&report, &policy.deny_toml),
            });
            if !verdict.denied.is_empty() {
                denied.push(format!("{}: {}", c.name, verdict.denied.join(", ")));
            }
        }
        if !denied.is_empty() {
            return Err(anyhow::Error::new(Refusal(format!(
                "the dependency policy ({}) denies {} component(s) of line {}:\n  {}\n  help: `distro policy --source {}` shows each finding with its way out",
                policy.deny_toml.display(),
                denied.len(),
                build.line,
                denied.join("\n  "),
                src.display()
            ))));
        }
        Ok(())
    }

    /// Whether the record is published to this registry with this key and the registry still
    /// holds it: every tag names the recorded digest, which verifies.
    fn published_intact(&self, record: &LineRelease) -> anyhow::Result<bool> {
        if record.state != ReleaseState::Published
            || record.registry.as_deref() != Some(self.args.to.as_str())
            || record.public_key.as_ref().map(|k| &k.sha256)
                != Some(&self.public_key_artifact.sha256)
        {
            return Ok(false);
        }
        for c in &record.components {
            let Some(p) = &c.pushed else {
                return Ok(false);
            };
            let (registry, repo) = split_repository(&p.repository)?;
            let Ok(mut store) = Registry::connect(registry, repo, &self.registry) else {
                return Ok(false);
            };
            match store.manifest(&p.tag) {
                Ok(Some(m)) if m.digest == p.digest => {}
                _ => return Ok(false),
            }
            let report = verify::verify(
                &mut store,
                &p.by_digest,
                Some(&p.digest),
                &self.public_key,
                &tag_policy(record),
                Some(&p.repository),
            );
            if !report.passed {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Push by digest → sign → attest → [conformance] → verify → tag, each step recorded.
    fn publish(&self, record: &mut LineRelease, record_path: &Path) -> anyhow::Result<()> {
        let v = record.line.clone();
        let to = self.args.to.trim_end_matches('/');
        let (registry, namespace) = to.split_once('/').unwrap_or((to, ""));
        let namespace = namespace.trim_matches('/');
        record.registry = Some(self.args.to.clone());
        record.public_key = Some(self.public_key_artifact.clone());
        record.state = ReleaseState::Built;
        anyhow::ensure!(
            record.components.iter().all(|c| c.image.is_some()),
            "line {v}: a component has no image; run the release without reusing the record"
        );

        // Push: every blob, then the manifest by digest. No tag is written.
        self.progress.start(&v, "push");
        let t = Instant::now();
        let mut session: Option<Registry> = None;
        for c in &mut record.components {
            let Some(img) = &c.image else { continue };
            let repo = if namespace.is_empty() {
                c.name.clone()
            } else {
                format!("{namespace}/{}", c.name)
            };
            let mut dest = match &session {
                Some(s) => s.sibling(&repo),
                None => {
                    let s = Registry::connect(registry, &repo, &self.registry)
                        .with_context(|| format!("connecting to {registry}"))?;
                    session = Some(s.sibling(&repo));
                    s
                }
            };
            let mut layout = Layout::open_dir(Path::new(&img.layout.path), false)?;
            let digest = transfer::push_by_digest(&mut layout, Some(&img.tag), &mut dest)
                .with_context(|| format!("pushing {} to {registry}/{repo}", c.name))?
                .digest;
            let repository = format!("{registry}/{repo}");
            c.pushed = Some(Pushed {
                by_digest: format!("{repository}@{digest}"),
                repository,
                digest,
                tag: img.tag.clone(),
                tagged: false,
            });
        }
        self.step_done(record, "push", t, record_path)?;

        // Sign, by digest, for the repository (no tag): idempotent per key.
        self.progress.start(&v, "sign");
        let t = Instant::now();
        for c in &record.components {
            let p = pushed(c)?;
            let mut store = self.store(p)?;
            let out = cosign::sign(&mut store, Some(&p.digest), &p.repository, &self.key)
                .with_context(|| format!("signing {}", p.by_digest))?;
            record_check(
                &mut record.checks,
                &format!("sign {}", c.name),
                "signature",
                true,
                format!(
                    "{} ({} signature(s) under {})",
                    if out.added {
                        "signed"
                    } else {
                        "already signed by this key, nothing added"
                    },
                    out.signatures,
                    out.tag
                ),
            );
            kill_point("sign", Some(&c.name));
        }
        self.step_done(record, "sign", t, record_path)?;

        // Attest the documents the record names (the image's SBOM, provenance, VEX, FIPS
        // evidence), each with the sha256 recorded for it, as `distro attest --build-dir` does.
        // The test result is attested after the conformance stage, below.
        self.progress.start(&v, "attest");
        let t = Instant::now();
        let vex = record.vex.clone();
        for c in &record.components {
            let p = pushed(c)?;
            let preds =
                super::attest::documents(&super::attest::recorded(c, vex.as_ref(), record_path))?;
            let mut store = self.store(p)?;
            let (_, outs) = cosign::attest(
                &mut store,
                Some(&p.digest),
                &p.repository,
                &self.key,
                &preds,
            )
            .with_context(|| format!("attesting {}", p.by_digest))?;
            for o in &outs {
                record_attested(&mut record.checks, &c.name, o);
            }
            kill_point("attest", Some(&c.name));
        }
        self.step_done(record, "attest", t, record_path)?;

        // Conformance: the suite runs on this line's images and binaries (the older line built
        // beside it is N-1); its summary goes into the record and, signed as an in-toto
        // test-result attestation, onto each image by digest. Verify below then requires it,
        // so a FAILED run refuses the release before any tag moves.
        self.progress.start(&v, "conformance");
        let t = Instant::now();
        let exe = std::env::current_exe().context("locating the distro binary")?;
        let opts = distro_conformance::stage::StageOptions::new(self.args.conformance, exe);
        let outcome = distro_conformance::stage::stage(&self.out, &v, None, &opts)
            .with_context(|| format!("line {v}: the conformance stage"))?;
        match outcome.summary() {
            Some(summary) => {
                let failed = summary.totals.failed;
                record_check(
                    &mut record.checks,
                    "conformance",
                    "conformance",
                    failed == 0,
                    outcome.describe(),
                );
                for c in &record.components {
                    let p = pushed(c)?;
                    let mut store = self.store(p)?;
                    let (_, o) = distro_images::testresult::attest(
                        &mut store,
                        Some(&p.digest),
                        &p.repository,
                        &self.key,
                        summary,
                    )
                    .with_context(|| format!("attesting the test result to {}", p.by_digest))?;
                    record_attested(&mut record.checks, &c.name, &o);
                }
                record.conformance = Some(summary.clone());
            }
            None => {
                record_check(
                    &mut record.checks,
                    "conformance",
                    "conformance",
                    true,
                    outcome.describe(),
                );
                if let Some(c) = record.checks.last_mut() {
                    c.result = CheckResult::Skipped;
                }
                record.conformance = None;
            }
        }
        self.step_done(record, "conformance", t, record_path)?;

        // Verify each image by digest, as an operator would, before its tag moves.
        self.progress.start(&v, "verify");
        let t = Instant::now();
        let policy = tag_policy(record);
        let mut refused = Vec::new();
        for c in &record.components {
            let p = pushed(c)?;
            let mut store = self.store(p)?;
            let report = verify::verify(
                &mut store,
                &p.by_digest,
                Some(&p.digest),
                &self.public_key,
                &policy,
                Some(&p.repository),
            );
            for ch in &report.checks {
                record_check(
                    &mut record.checks,
                    &format!("verify {}", c.name),
                    &ch.name,
                    ch.ok,
                    ch.detail.clone(),
                );
            }
            if !report.passed {
                refused.push(format!("{}: {}", p.by_digest, report.failures()));
            }
        }
        self.step_done(record, "verify", t, record_path)?;
        if !refused.is_empty() {
            return Err(anyhow::Error::new(Refusal(format!(
                "line {v}: the pushed images do not verify, so no tag was moved:\n  {}",
                refused.join("\n  ")
            ))));
        }

        // Only now: move each tag to its verified digest.
        self.progress.start(&v, "tag");
        let t = Instant::now();
        for c in &mut record.components {
            let Some(p) = c.pushed.as_mut() else { continue };
            let (registry, repo) = split_repository(&p.repository)?;
            let mut store = Registry::connect(registry, repo, &self.registry)?;
            transfer::move_tag(&mut store, &p.digest, &p.tag)
                .with_context(|| format!("tagging {} as {}", p.by_digest, p.tag))?;
            p.tagged = true;
            kill_point("tag", Some(&c.name));
        }
        record.state = ReleaseState::Published;
        self.step_done(record, "tag", t, record_path)?;
        Ok(())
    }

    /// Records a publishing step's time, writes the record, and passes the crash hook.
    fn step_done(
        &self,
        record: &mut LineRelease,
        stage: &str,
        started: Instant,
        record_path: &Path,
    ) -> anyhow::Result<()> {
        let ms = started.elapsed().as_millis() as u64;
        self.progress.done(&record.line, stage, false, ms);
        record.stages.push(StageTiming {
            stage: stage.into(),
            duration_ms: ms,
            skipped: false,
        });
        record::write(record_path, record)?;
        kill_point(stage, None);
        Ok(())
    }

    /// A registry session for the repository of `p`.
    fn store(&self, p: &Pushed) -> anyhow::Result<Registry> {
        let (registry, repo) = split_repository(&p.repository)?;
        Registry::connect(registry, repo, &self.registry)
            .with_context(|| format!("connecting to {registry} for {repo}"))
    }
}

/// The policy a line's pushed image must meet before its tag moves (`distro release` and
/// `distro push --release`): every requirement on, a VEX only when the line has one, the
/// conformance test result when the suite ran.
pub fn tag_policy(record: &LineRelease) -> verify::Policy {
    verify::Policy {
        require_vex: record.vex.is_some(),
        require_test_result: record.conformance.is_some(),
        ..verify::Policy::default()
    }
}

/// The pushed reference of a component (set by the push step).
/// A component's policy verdict: cargo-deny's errors, less the advisories the line's VEX
/// states are `not_affected` or `fixed`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Verdict {
    /// What denies the component (`check/code crate version (advisory)`).
    denied: Vec<String>,
    /// Advisories accepted by a VEX statement (`id: status (why)`).
    accepted: Vec<String>,
}

impl Verdict {
    fn detail(&self, report: &distro_sbom::policy::PolicyReport, deny_toml: &Path) -> String {
        let mut d = format!(
            "{} with {} (advisories of {})",
            report.cargo_deny,
            deny_toml.display(),
            report
                .advisory_db_date
                .as_deref()
                .unwrap_or("an undated snapshot")
        );
        if self.denied.is_empty() {
            d.push_str(": licences, bans, sources and advisories pass");
        } else {
            d.push_str(&format!(": denied by {}", self.denied.join(", ")));
        }
        if !self.accepted.is_empty() {
            d.push_str(&format!(
                "; accepted by the line's VEX: {}",
                self.accepted.join(", ")
            ));
        }
        d
    }
}

/// Judges one component's cargo-deny report against the line's VEX statements.
fn judge(report: &distro_sbom::policy::PolicyReport, vex: &VexStatuses) -> Verdict {
    let mut v = Verdict::default();
    for f in report.findings.iter().filter(|f| f.severity == "error") {
        let vexed = f
            .advisory
            .as_ref()
            .filter(|_| f.check == "advisories")
            .and_then(|id| vex.get(id).map(|s| (id, s)))
            .filter(|(_, (status, _))| status == "not_affected" || status == "fixed");
        match vexed {
            Some((id, (status, why))) => {
                let why = if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                };
                v.accepted.push(format!("{id}: {status}{why}"));
            }
            None => v.denied.push(f.summary()),
        }
    }
    if !report.passed && v.denied.is_empty() && v.accepted.is_empty() {
        // cargo-deny failed without an error diagnostic: not a pass.
        v.denied
            .push("cargo-deny exited with failure and no finding".into());
    }
    v
}

fn pushed(c: &ComponentRelease) -> anyhow::Result<&Pushed> {
    c.pushed
        .as_ref()
        .with_context(|| format!("internal error: {} was not pushed", c.name))
}

fn record_check(
    checks: &mut Vec<schema::Check>,
    stage: &str,
    name: &str,
    ok: bool,
    detail: String,
) {
    checks.push(schema::Check {
        stage: stage.into(),
        name: name.into(),
        result: if ok {
            CheckResult::Passed
        } else {
            CheckResult::Failed
        },
        detail,
    });
}

/// Records one attestation of a component (added, or already there from an earlier run).
fn record_attested(checks: &mut Vec<schema::Check>, component: &str, o: &cosign::AttestOutcome) {
    record_check(
        checks,
        &format!("attest {component}"),
        &o.predicate_type,
        true,
        format!(
            "{} ({}: {})",
            if o.added {
                "attested"
            } else {
                "already attested"
            },
            o.layer_digest,
            o.note
        ),
    );
}

/// `REGISTRY/REPO` → (`REGISTRY`, `REPO`).
fn split_repository(repository: &str) -> anyhow::Result<(&str, &str)> {
    repository
        .split_once('/')
        .with_context(|| format!("`{repository}` is not REGISTRY/REPOSITORY"))
}

/// The previous record, if it parses (one that does not is ignored with a warning: the run
/// redoes everything).
fn previous_record(cx: &Context, path: &Path) -> Option<LineRelease> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            cx.warn(&format!(
                "{} is not a release record this distro reads ({e}); redoing every stage",
                path.display()
            ));
            None
        }
    }
}

/// Whether every local artifact of a record still has its recorded content.
fn local_intact(r: &LineRelease) -> bool {
    if !intact(&r.build_record) || r.vex.as_ref().is_some_and(|a| !intact(a)) {
        return false;
    }
    r.components.iter().all(|c| {
        intact(&c.binary)
            && intact(&c.evidence)
            && intact(&c.provenance)
            && c.sbom.as_ref().is_some_and(intact)
            && c.spdx.as_ref().is_none_or(intact)
            && c.image.as_ref().is_some_and(|i| {
                intact(&i.sbom)
                    && intact(&i.hardening_manifest)
                    && layout_digest(Path::new(&i.layout.path), &i.tag)
                        .is_ok_and(|d| d == i.layout.sha256)
            })
    })
}

/// Cargo's home (its index cache is what the VEX evaluation reads).
fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME")
        .context("neither CARGO_HOME nor HOME is set: cannot find cargo's index cache")?;
    Ok(Path::new(&home).join(".cargo"))
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
) -> anyhow::Result<(Vec<schema::Check>, AdvisoryDb, Snapshot)> {
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
    // The policy stage runs cargo-deny when the repository has a dependency policy.
    if super::policy::default_deny_toml(cx).is_file() {
        checks.push(match on_path("cargo-deny") {
            Some(p) => Check {
                name: "tool",
                ok: true,
                detail: format!("cargo-deny: {}", p.display()),
            },
            None => Check {
                name: "tool",
                ok: false,
                detail: "`cargo-deny` is not on PATH (it checks the lines' dependencies against deny.toml); `cargo install cargo-deny --locked --version 0.20.2`, or run scripts/install-deps.sh".into(),
            },
        });
    }
    let (db_check, db) = check_advisory_db(cx, dist);
    checks.push(db_check);
    checks.push(check_key(&args.key, public_key));
    checks.push(check_writable("output directory", out));
    checks.push(check_registry(&args.to, args.plain_http));

    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
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
    let (db, snapshot) =
        db.context("internal error: the advisory database check passed without a database")?;
    let checks = checks
        .into_iter()
        .map(|c| schema::Check {
            stage: "preflight".into(),
            name: c.name.into(),
            result: CheckResult::Passed,
            detail: c.detail,
        })
        .collect();
    Ok((checks, db, snapshot))
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

/// The advisory database the VEX stage reads: present, and every advisory parses. Loaded once
/// here; the VEX stage of every line uses it.
fn check_advisory_db(
    cx: &Context,
    dist: &distro_config::Distribution,
) -> (Check, Option<(AdvisoryDb, Snapshot)>) {
    match cx.advisory_db(None, Some(dist)) {
        Ok((db, snap)) => (
            Check {
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
            Some((db, snap)),
        ),
        Err(e) => (
            Check {
                name: "advisory database",
                ok: false,
                detail: format!("{e:#}"),
            },
            None,
        ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use distro_sbom::policy::{Finding, PolicyReport};

    fn finding(check: &str, code: &str, krate: &str, advisory: Option<&str>) -> Finding {
        Finding {
            severity: "error".into(),
            check: check.into(),
            code: code.into(),
            crate_name: krate.into(),
            version: "1.0.0".into(),
            advisory: advisory.map(str::to_string),
            message: String::new(),
            way_out: String::new(),
            path: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn report(passed: bool, findings: Vec<Finding>) -> PolicyReport {
        PolicyReport {
            component: "mesh-proxy".into(),
            passed,
            findings,
            summary: BTreeMap::new(),
            advisory_db_date: Some("2026-08-21".into()),
            cargo_deny: "cargo-deny 0.20.2".into(),
        }
    }

    fn vex(entries: &[(&str, &str, &str)]) -> VexStatuses {
        entries
            .iter()
            .map(|(id, status, why)| (id.to_string(), (status.to_string(), why.to_string())))
            .collect()
    }

    #[test]
    fn vex_not_affected_or_fixed_accepts_an_advisory_and_nothing_else() {
        let statuses = vex(&[
            (
                "RUSTSEC-2024-0001",
                "not_affected",
                "vulnerable_code_not_in_execute_path",
            ),
            ("CVE-2024-2", "fixed", "0003-fix.patch"),
            ("RUSTSEC-2024-0003", "affected", ""),
        ]);
        let r = report(
            false,
            vec![
                finding(
                    "advisories",
                    "vulnerability",
                    "a",
                    Some("RUSTSEC-2024-0001"),
                ),
                // Accepted by its alias.
                finding("advisories", "vulnerability", "b", Some("CVE-2024-2")),
                // Affected: denied.
                finding(
                    "advisories",
                    "vulnerability",
                    "c",
                    Some("RUSTSEC-2024-0003"),
                ),
                // A licence is never accepted by a VEX statement, even one naming the crate.
                finding("licenses", "rejected", "d", None),
            ],
        );
        let v = judge(&r, &statuses);
        assert_eq!(
            v.accepted,
            [
                "RUSTSEC-2024-0001: not_affected (vulnerable_code_not_in_execute_path)",
                "CVE-2024-2: fixed (0003-fix.patch)"
            ]
        );
        assert_eq!(
            v.denied,
            [
                "advisories/vulnerability c 1.0.0 (RUSTSEC-2024-0003)",
                "licenses/rejected d 1.0.0"
            ]
        );
        let detail = v.detail(&r, Path::new("/repo/deny.toml"));
        assert!(detail.contains("denied by") && detail.contains("accepted by the line's VEX"));
    }

    #[test]
    fn a_failed_run_without_findings_is_not_a_pass() {
        let v = judge(&report(false, Vec::new()), &VexStatuses::new());
        assert_eq!(v.denied, ["cargo-deny exited with failure and no finding"]);
        let v = judge(&report(true, Vec::new()), &VexStatuses::new());
        assert_eq!(v, Verdict::default());
        assert!(v
            .detail(&report(true, Vec::new()), Path::new("deny.toml"))
            .ends_with("licences, bans, sources and advisories pass"));
    }

    #[test]
    fn advisory_only_accepted_in_the_advisories_check() {
        // An id that happens to be in the VEX but on a finding of another check is denied.
        let statuses = vex(&[("X-1", "not_affected", "")]);
        let v = judge(
            &report(false, vec![finding("bans", "banned", "ring", Some("X-1"))]),
            &statuses,
        );
        assert_eq!(v.denied, ["bans/banned ring 1.0.0 (X-1)"]);
        assert!(v.accepted.is_empty());
    }
}
