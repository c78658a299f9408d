//! `distro conformance`: the conformance suite — emulated customer environments × scenarios,
//! run against the released binaries and images, with JUnit, Markdown, HTML and JSON reports.
//! Also: `--list`, `--emit github-actions|k8s-jobs`, `merge`, and the in-namespace fixtures.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use distro_conformance::{fixture, profile, report, scenarios, shard, Options};

use super::Context;
use crate::output::{self, Format};

/// Exit code when the suite cannot run because it is not root (distinct from failures, 1).
pub const EXIT_NOT_ROOT: u8 = 4;

/// Arguments of `distro conformance`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    sub: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Combine the summaries of shards (`--shard I/N` runs) into one report.
    Merge {
        /// Where the merged reports go.
        #[arg(long, value_name = "DIR", default_value = "conformance-report")]
        report_dir: PathBuf,
        /// Shard report directories (each with summary.json) or summary files.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
    },
    /// The programs the suite runs inside its namespaces (application, delay relay, load).
    #[command(subcommand, hide = true)]
    Fixture(FixtureCmd),
}

#[derive(clap::Subcommand)]
enum FixtureCmd {
    /// The application behind a sidecar.
    App {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        name: String,
        #[arg(long)]
        app_version: String,
        #[arg(long)]
        fail_file: PathBuf,
    },
    /// A TCP relay adding latency.
    Relay {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        delay_ms: u64,
    },
    /// HTTP load through a local sidecar; prints a JSON report.
    Load {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value = "/api")]
        path: String,
        #[arg(long)]
        count: Option<u32>,
        #[arg(long)]
        seconds: Option<u64>,
        #[arg(long, default_value_t = 1)]
        concurrency: u32,
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The line under test: a `distro build`/`distro image` output directory (`--out`: its
    /// newest line), or one line inside it (`<out>/<line>`).
    #[arg(long, value_name = "DIR")]
    line: Option<PathBuf>,
    /// The previous line N-1 (version skew, upgrade); default: the newest older line built
    /// beside --line (`<out>/<older>`), else the line itself (the report then says "skew uses
    /// the same build twice").
    #[arg(long, value_name = "DIR")]
    previous_line: Option<PathBuf>,
    /// Run only this profile (repeatable); default: every profile.
    #[arg(long, value_name = "NAME")]
    profile: Vec<String>,
    /// Run only this scenario (repeatable); default: every scenario.
    #[arg(long, value_name = "NAME")]
    scenario: Vec<String>,
    /// Run shard I of N of the selected profiles (e.g. 2/4).
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<(u32, u32)>,
    /// Environments brought up at the same time.
    #[arg(long, default_value_t = 3)]
    jobs: usize,
    /// Profiles directory (default: the built-in conformance/profiles).
    #[arg(long, value_name = "DIR")]
    profiles_dir: Option<PathBuf>,
    /// Where the reports go (summary.json, junit.xml, report.md, report.html).
    #[arg(long, value_name = "DIR", default_value = "conformance-report")]
    report_dir: PathBuf,
    /// Working directory of the environments.
    #[arg(long, value_name = "DIR", default_value = "/tmp/distro-conformance")]
    work_dir: PathBuf,
    /// Where run ledgers are kept (leftovers of crashed runs are removed from here).
    #[arg(long, value_name = "DIR", default_value = "/run/distro-conformance")]
    state_dir: PathBuf,
    /// Run container hosts from the released bare binaries instead of the images.
    #[arg(long)]
    no_containers: bool,
    /// Keep the environments' files (configs, logs) under --work-dir after the run.
    #[arg(long)]
    keep_files: bool,
    /// List profiles (with capabilities) and scenarios (with requirements), run nothing.
    #[arg(long)]
    list: bool,
    /// Write a CI definition running the matrix in shards on stdout, run nothing.
    #[arg(long, value_enum, value_name = "ENGINE")]
    emit: Option<Emit>,
    /// Shards for --emit (default: one per profile).
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
    /// Image for --emit k8s-jobs (must carry distro, the tools and the line's output in /out).
    #[arg(long, value_name = "REF", default_value = "distro-conformance:latest")]
    runner_image: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Emit {
    /// A GitHub Actions workflow whose job matrix is the shards.
    GithubActions,
    /// An indexed Kubernetes Job.
    K8sJobs,
}

fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected I/N, e.g. 1/4"))?;
    let i: u32 = i.parse().map_err(|_| format!("{s:?}: I is not a number"))?;
    let n: u32 = n.parse().map_err(|_| format!("{s:?}: N is not a number"))?;
    if i == 0 || n == 0 || i > n {
        return Err(format!("{s:?}: need 1 <= I <= N"));
    }
    Ok((i, n))
}

/// Runs `distro conformance`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    match args.sub {
        Some(Sub::Fixture(f)) => fixture_cmd(f),
        Some(Sub::Merge { report_dir, shards }) => {
            let s = shard::merge(&shards)?;
            report::write_all(&s, &report_dir)?;
            render(&s, cx, &report_dir)
        }
        None => run_suite(args.run, cx),
    }
}

fn fixture_cmd(f: FixtureCmd) -> anyhow::Result<ExitCode> {
    match f {
        FixtureCmd::App {
            listen,
            name,
            app_version,
            fail_file,
        } => fixture::app(listen, name, app_version, fail_file)?,
        FixtureCmd::Relay {
            listen,
            to,
            delay_ms,
        } => fixture::relay(listen, to, Duration::from_millis(delay_ms))?,
        FixtureCmd::Load {
            target,
            path,
            count,
            seconds,
            concurrency,
            pause_ms,
        } => {
            let r = fixture::load(&fixture::LoadSpec {
                target,
                path,
                count: count.or(if seconds.is_none() { Some(1) } else { None }),
                duration: seconds.map(Duration::from_secs),
                concurrency,
                pause: Duration::from_millis(pause_ms),
            });
            output::json(&r)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_suite(a: RunArgs, cx: &Context) -> anyhow::Result<ExitCode> {
    let profiles_dir = a.profiles_dir.clone().unwrap_or_else(profile::builtin_dir);
    if a.list {
        return list(&profiles_dir, cx);
    }
    if let Some(engine) = a.emit {
        let all = profile::load_dir(&profiles_dir)?;
        let names: Vec<String> = all.iter().map(|p| p.name.clone()).collect();
        let n = a.shards.unwrap_or(names.len() as u32).max(1);
        output::data(&match engine {
            Emit::GithubActions => shard::github_actions(n, &names),
            Emit::K8sJobs => shard::k8s_jobs(n, &a.runner_image),
        });
        return Ok(ExitCode::SUCCESS);
    }
    let Some(line) = a.line.clone() else {
        anyhow::bail!("--line DIR is required: the output of `distro build --out DIR` and `distro image --out DIR`");
    };
    let reproduce = std::iter::once("distro".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let opts = Options {
        line,
        previous_line: a.previous_line,
        profiles_dir,
        profiles: a.profile,
        scenarios: a.scenario,
        shard: a.shard,
        jobs: a.jobs,
        report_dir: a.report_dir.clone(),
        work_dir: a.work_dir,
        state_dir: a.state_dir,
        fixture_bin: std::env::current_exe()?,
        containers: !a.no_containers,
        keep_files: a.keep_files,
        reproduce,
    };
    let s = match distro_conformance::run(&opts) {
        Ok(s) => s,
        Err(distro_conformance::Error::NotRoot) => {
            output::status(false, &distro_conformance::Error::NotRoot.to_string());
            return Ok(ExitCode::from(EXIT_NOT_ROOT));
        }
        Err(e) => return Err(e.into()),
    };
    render(&s, cx, &a.report_dir)
}

fn render(
    s: &distro_schema::ConformanceSummary,
    cx: &Context,
    dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    match cx.format {
        Format::Json => output::json(s)?,
        Format::Text => {
            output::data(&report::markdown(s)?);
            cx.status(&format!(
                "reports: {} ({})",
                dir.display(),
                report::FILES.join(", ")
            ));
        }
    }
    Ok(if s.totals.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn list(dir: &std::path::Path, cx: &Context) -> anyhow::Result<ExitCode> {
    let all = profile::load_dir(dir)?;
    match cx.format {
        Format::Json => {
            let v = serde_json::json!({
                "profiles": all.iter().map(|p| serde_json::json!({
                    "name": p.name, "description": p.description, "capabilities": p.capabilities,
                })).collect::<Vec<_>>(),
                "scenarios": scenarios::SCENARIOS.iter().map(|s| serde_json::json!({
                    "name": s.name, "description": s.description, "requires": s.requires,
                })).collect::<Vec<_>>(),
            });
            output::json(&v)?;
        }
        Format::Text => {
            let mut t = String::from("profiles:\n");
            for p in &all {
                t.push_str(&format!(
                    "  {:<28} {}\n  {:<28} capabilities: {}\n",
                    p.name,
                    p.description,
                    "",
                    p.capabilities
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            t.push_str("scenarios:\n");
            for s in scenarios::SCENARIOS {
                t.push_str(&format!(
                    "  {:<28} {} (needs: {})\n",
                    s.name,
                    s.description,
                    s.requires.join(", ")
                ));
            }
            output::data(&t);
        }
    }
    Ok(ExitCode::SUCCESS)
}
