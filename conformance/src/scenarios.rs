//! The scenario table. Like Gateway API's conformance tests, every scenario is one value: a
//! short name, a description, the capabilities it needs and one function. A profile runs every
//! scenario whose capabilities it declares; the others are reported `unsupported`.
//!
//! A scenario function gets the running environment and returns its observations, or a
//! message saying what was observed instead of what was expected (the runner prefixes the
//! environment and scenario names).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use distro_hostio::Cmd;

use crate::env::{spiffe_id, Env, HostRt, ADMIN_PORT, CP_OPS_PORT, INBOUND_PORT};
use crate::exec::in_ns;
use crate::fixture::LoadReport;
use crate::profile::Role;

/// What a scenario returns: observations (`key=value`), or what went wrong.
pub type Outcome = Result<Vec<String>, String>;

/// One scenario.
pub struct Scenario {
    /// Short name (`--scenario`).
    pub name: &'static str,
    /// What it checks.
    pub description: &'static str,
    /// Capabilities a profile must declare for it to run.
    pub requires: &'static [&'static str],
    /// The check.
    pub run: fn(&Env) -> Outcome,
}

/// Every scenario, in run order (scenarios that disturb the mesh run last).
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "mtls-connectivity",
        description: "Every workload reaches the backend over mTLS; the backend sees the caller's SPIFFE ID",
        requires: &["mtls"],
        run: mtls_connectivity,
    },
    Scenario {
        name: "wrong-identity-refused",
        description: "A proxy refuses an endpoint presenting another identity than the one configured",
        requires: &["identity"],
        run: wrong_identity_refused,
    },
    Scenario {
        name: "authorization-allow-deny",
        description: "Inbound authorization allows GET /api from mesh workloads and denies /admin",
        requires: &["authorization"],
        run: authorization_allow_deny,
    },
    Scenario {
        name: "non-mesh-client-refused",
        description: "Plain HTTP and TLS without a client certificate get no answer from a sidecar",
        requires: &["non-mesh-client"],
        run: non_mesh_client_refused,
    },
    Scenario {
        name: "non-fips-client-refused",
        description: "openssl with FIPS suites negotiates; ChaCha20-only, X25519-only and TLS 1.1 clients fail",
        requires: &["non-fips-client"],
        run: non_fips_client_refused,
    },
    Scenario {
        name: "traffic-split",
        description: "A weighted split between backend v1 and v2 stays within the profile's tolerance",
        requires: &["traffic-split"],
        run: traffic_split,
    },
    Scenario {
        name: "retries",
        description: "Retries route around a failing endpoint: zero failed requests",
        requires: &["retries"],
        run: retries,
    },
    Scenario {
        name: "large-transfer",
        description: "256 KiB responses cross the impaired link (MTU, loss, rate, latency) intact",
        requires: &["impaired-link"],
        run: large_transfer,
    },
    Scenario {
        name: "no-route-out",
        description: "No host and not the gateway has a route out of the environment",
        requires: &["air-gapped"],
        run: no_route_out,
    },
    Scenario {
        name: "mirror-images-verified",
        description: "Every container host runs an image pulled from the in-environment mirror and verified by distro verify",
        requires: &["air-gapped"],
        run: mirror_images_verified,
    },
    Scenario {
        name: "metrics-scrape",
        description: "Every proxy and the control plane serve Prometheus text with the mesh's metrics",
        requires: &["metrics"],
        run: metrics_scrape,
    },
    Scenario {
        name: "config-push",
        description: "A configuration change reaches every proxy within the profile's limit (2 s)",
        requires: &["config-push"],
        run: config_push,
    },
    Scenario {
        name: "upgrade-canary",
        description: "Traffic moves from the N-1 backend to the N backend in weighted steps under load with zero failed requests",
        requires: &["upgrade"],
        run: upgrade_canary,
    },
    Scenario {
        name: "ca-rotation",
        description: "A CA rotation and certificate renewals under load: zero failed requests, every proxy renewed",
        requires: &["ca-rotation"],
        run: ca_rotation,
    },
    Scenario {
        name: "control-plane-outage",
        description: "With the control plane down, traffic continues on the last configuration; proxies reconnect after",
        requires: &["cp-outage"],
        run: control_plane_outage,
    },
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

fn load_cmd(
    env: &Env,
    h: &HostRt,
    service: &str,
    path: &str,
    amount: &str,
    conc: u32,
) -> Result<Cmd, String> {
    let port = env
        .outbound_port(service)
        .ok_or_else(|| format!("no outbound listener for service `{service}`"))?;
    let mut c = in_ns(
        &h.ns,
        &env.inputs.fixture_bin,
        format!("load {service} from {}", h.spec.name),
    );
    c.args(["conformance", "fixture", "load", "--target"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--path", path, "--concurrency", &conc.to_string()]);
    for a in amount.split(' ') {
        c.arg(a);
    }
    Ok(c)
}

fn parse_report(stdout: &[u8], what: &str) -> Result<LoadReport, String> {
    serde_json::from_slice(stdout)
        .map_err(|e| format!("{what}: the load client printed no report ({e})"))
}

/// Sends `count` requests for `path` to `service` from `h` (through its sidecar).
fn load(
    env: &Env,
    h: &HostRt,
    service: &str,
    path: &str,
    count: u32,
    conc: u32,
) -> Result<LoadReport, String> {
    let mut c = load_cmd(
        env,
        h,
        service,
        path,
        &format!("--count {}", count.div_ceil(conc.max(1))),
        conc,
    )?;
    let out = c.run().map_err(|e| e.to_string())?;
    parse_report(&out.stdout, &c.display())
}

/// Load for `seconds` in the background.
struct Background {
    child: std::process::Child,
    line: String,
}

fn background(env: &Env, h: &HostRt, service: &str, seconds: u64) -> Result<Background, String> {
    let mut c = load_cmd(
        env,
        h,
        service,
        "/api",
        &format!("--seconds {seconds} --pause-ms 5"),
        2,
    )?;
    let line = c.display();
    let mut child = c
        .spawn(Stdio::piped(), Stdio::null())
        .map_err(|e| e.to_string())?;
    if let Err(e) = env.record_pid(child.id()) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.to_string());
    }
    Ok(Background { child, line })
}

impl Background {
    fn finish(self) -> Result<LoadReport, String> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| format!("{}: {e}", self.line))?;
        parse_report(&out.stdout, &self.line)
    }
}

fn summary(r: &LoadReport) -> String {
    format!(
        "{}/{} ok, statuses {:?}, answered by {:?}, max {} ms{}",
        r.ok,
        r.sent,
        r.statuses,
        r.names,
        r.max_ms,
        if r.errors.is_empty() {
            String::new()
        } else {
            format!(", first errors: {:?}", r.errors)
        }
    )
}

fn mtls_connectivity(env: &Env) -> Outcome {
    let mut obs = Vec::new();
    let limit = env.profile.thresholds.request_max_ms;
    for h in env
        .workloads()
        .filter(|h| h.spec.service.as_deref() != Some("backend"))
    {
        let r = load(env, h, "backend", "/api", 10, 1)?;
        let id = h.spiffe_id.clone().unwrap_or_default();
        if r.ok != r.sent || r.sent == 0 {
            return Err(format!("{} → backend: {}", h.spec.name, summary(&r)));
        }
        if !r.first_body.contains(&format!("xfcc=URI={id}")) {
            return Err(format!(
                "{} → backend: the backend did not see the caller's identity {id}; it saw: {}",
                h.spec.name,
                r.first_body.trim()
            ));
        }
        if r.max_ms > limit {
            return Err(format!(
                "{} → backend: slowest request {} ms > the profile's limit {limit} ms",
                h.spec.name, r.max_ms
            ));
        }
        obs.push(format!("{}_to_backend_max_ms={}", h.spec.name, r.max_ms));
    }
    // Every other service from the frontend (e.g. a legacy VM's).
    let fe = env.frontend();
    for s in env
        .services
        .iter()
        .filter(|s| !["backend", "backend-retry", "impostor"].contains(&s.as_str()))
    {
        let r = load(env, fe, s, "/api", 5, 1)?;
        if r.ok != r.sent {
            return Err(format!("frontend → {s}: {}", summary(&r)));
        }
        obs.push(format!("frontend_to_{s}_max_ms={}", r.max_ms));
    }
    Ok(obs)
}

fn wrong_identity_refused(env: &Env) -> Outcome {
    let fe = env.frontend();
    let r = load(env, fe, "impostor", "/api", 5, 1)?;
    if r.ok > 0 {
        return Err(format!(
            "frontend's proxy sent requests to service `impostor`, whose endpoints are configured as {} but present {}: {} — the server identity was not checked",
            spiffe_id("impostor"),
            spiffe_id("backend"),
            summary(&r)
        ));
    }
    let m = env.http_local(fe, ADMIN_PORT, "/metrics").1;
    let mismatches = metric_sum(
        &m,
        "mesh_proxy_tls_handshakes_total",
        &["identity_mismatch"],
    );
    if mismatches < 1.0 {
        return Err(format!(
            "requests to `impostor` failed ({}) but the proxy counted no identity_mismatch handshake",
            summary(&r)
        ));
    }
    Ok(vec![
        format!("impostor_statuses={:?}", r.statuses),
        format!("identity_mismatch_handshakes={mismatches}"),
    ])
}

fn authorization_allow_deny(env: &Env) -> Outcome {
    let fe = env.frontend();
    let allow = load(env, fe, "backend", "/api/allowed", 3, 1)?;
    if allow.ok != allow.sent {
        return Err(format!(
            "GET /api/allowed (allowed by rule mesh-reads-api): {}",
            summary(&allow)
        ));
    }
    let deny = load(env, fe, "backend", "/admin", 3, 1)?;
    if deny.statuses.get(&403).copied().unwrap_or(0) != deny.sent {
        return Err(format!(
            "GET /admin (no rule allows it) should be 403 every time: {}",
            summary(&deny)
        ));
    }
    Ok(vec![
        format!("allow={:?}", allow.statuses),
        format!("deny={:?}", deny.statuses),
    ])
}

fn client(env: &Env) -> Result<&HostRt, String> {
    env.hosts
        .iter()
        .find(|h| h.spec.role == Role::Client)
        .ok_or_else(|| "the profile has no client host".to_string())
}

fn backend_inbound(env: &Env) -> Result<String, String> {
    let b = env
        .serving("backend")
        .first()
        .copied()
        .ok_or("no backend")?;
    Ok(env.reach(b, INBOUND_PORT).to_string())
}

fn non_mesh_client_refused(env: &Env) -> Outcome {
    let c = client(env)?;
    let target = backend_inbound(env)?;
    let url = format!("http://{target}/api");
    let out = in_ns(&c.ns, "curl", "a plain-HTTP client without the mesh")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if code != "000" {
        return Err(format!(
            "plain HTTP to the sidecar at {target} got HTTP {code}; it must get no HTTP answer"
        ));
    }
    let (ok, text) = s_client(
        env,
        c,
        &target,
        &[
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384",
            "-groups",
            "P-384",
        ],
        true,
    )?;
    if text.contains("HTTP/1.1 200") || text.contains("name=") {
        return Err(format!(
            "TLS without a client certificate got an answer from {target} (openssl ok={ok}): {}",
            tail(&text)
        ));
    }
    Ok(vec![
        format!("plain_http_code={code}"),
        "tls_without_client_cert=no answer".into(),
    ])
}

/// Runs `openssl s_client` against `target` from `h`; with `request`, sends a GET.
fn s_client(
    env: &Env,
    h: &HostRt,
    target: &str,
    extra: &[&str],
    request: bool,
) -> Result<(bool, String), String> {
    let _ = env;
    let script = format!(
        "{} timeout 10 openssl s_client -connect {target} -servername mesh-endpoint {} 2>&1",
        if request {
            "printf 'GET /api HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n' |"
        } else {
            ""
        },
        extra.join(" ")
    );
    let out = in_ns(&h.ns, "sh", "an openssl client outside the mesh")
        .args(["-c", &script])
        .output()
        .map_err(|e| e.to_string())?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn negotiated(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let c = l.split("Cipher is ").nth(1)?.trim();
        (c != "(NONE)" && !c.is_empty()).then(|| c.to_string())
    })
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

fn non_fips_client_refused(env: &Env) -> Outcome {
    let c = client(env)?;
    let target = backend_inbound(env)?;
    let (_, base) = s_client(
        env,
        c,
        &target,
        &[
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384",
            "-groups",
            "P-384",
        ],
        false,
    )?;
    let Some(cipher) = negotiated(&base) else {
        return Err(format!(
            "a FIPS client (TLS 1.3, AES-256-GCM, P-384) did not negotiate with {target}: {}",
            tail(&base)
        ));
    };
    let mut obs = vec![format!("fips_client_cipher={cipher}")];
    let cases: &[(&str, &[&str])] = &[
        (
            "chacha20-only",
            &["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        ),
        ("x25519-only", &["-groups", "X25519"]),
        ("tls1.1", &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
    ];
    for (name, args) in cases {
        let (_, text) = s_client(env, c, &target, args, false)?;
        if let Some(cipher) = negotiated(&text) {
            return Err(format!(
                "the non-FIPS client `{name}` negotiated {cipher} with {target}; it must fail"
            ));
        }
        obs.push(format!("{name}=refused"));
    }
    Ok(obs)
}

fn versions_by_name(env: &Env) -> BTreeMap<String, String> {
    env.serving("backend")
        .iter()
        .map(|h| {
            (
                h.spec.name.clone(),
                h.spec.version.clone().unwrap_or_else(|| "v1".into()),
            )
        })
        .collect()
}

fn traffic_split(env: &Env) -> Outcome {
    let t = &env.profile.thresholds;
    let w = env.weights.lock().map(|w| *w).unwrap_or(t.split_weights);
    let r = load(env, env.frontend(), "backend", "/api", t.split_requests, 2)?;
    if r.ok != r.sent {
        return Err(format!("split: {}", summary(&r)));
    }
    let vers = versions_by_name(env);
    let v2: u32 = r
        .names
        .iter()
        .filter(|(n, _)| vers.get(*n).map(String::as_str) == Some("v2"))
        .map(|(_, c)| *c)
        .sum();
    let share = f64::from(v2) / f64::from(r.ok.max(1));
    let want = f64::from(w[1]) / f64::from((w[0] + w[1]).max(1));
    let obs = vec![
        format!("v2_share={share:.3}"),
        format!("configured={want:.3}"),
        format!("requests={}", r.ok),
    ];
    if (share - want).abs() > t.split_tolerance {
        return Err(format!(
            "v2 got {share:.3} of {} requests, configured {want:.3}, tolerance ±{}: answered by {:?}",
            r.ok, t.split_tolerance, r.names
        ));
    }
    Ok(obs)
}

fn retries(env: &Env) -> Outcome {
    let failing: Vec<&HostRt> = env
        .serving("backend")
        .into_iter()
        .filter(|h| h.spec.version.as_deref() == Some("v2"))
        .collect();
    if failing.is_empty() || env.serving("backend").len() < 2 {
        return Err("retries need two backend endpoints, one of them version v2".into());
    }
    for h in &failing {
        std::fs::write(h.fail_file(), b"503")
            .map_err(|e| format!("{}: {e}", h.fail_file().display()))?;
    }
    let r = load(
        env,
        env.frontend(),
        "backend-retry",
        "/api",
        env.profile.thresholds.retry_requests,
        2,
    );
    for h in &failing {
        let _ = std::fs::remove_file(h.fail_file());
    }
    let r = r?;
    if r.ok != r.sent {
        return Err(format!(
            "with {} answering 503, requests through the retrying route failed: {}",
            failing
                .iter()
                .map(|h| h.spec.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            summary(&r)
        ));
    }
    Ok(vec![
        format!("ok={}", r.ok),
        format!("answered_by={:?}", r.names),
    ])
}

/// Sets the split weights and waits until every proxy has the new configuration.
fn set_weights(env: &Env, w: [u32; 2]) -> Result<Duration, String> {
    let before = current_version(env);
    if let Ok(mut g) = env.weights.lock() {
        *g = w;
    }
    env.push_mesh().map_err(|e| e.to_string())?;
    env.wait_config_version(before + 1, Duration::from_secs(15))
        .ok_or_else(|| format!("weights {w:?} did not reach every proxy within 15 s"))
}

fn current_version(env: &Env) -> u64 {
    env.workloads()
        .filter_map(|h| env.admin_json(h, "/config")["config_version"].as_u64())
        .max()
        .unwrap_or(0)
}

fn large_transfer(env: &Env) -> Outcome {
    let saved = env.weights.lock().map(|w| *w).unwrap_or([50, 50]);
    set_weights(env, [0, 100])?;
    let size = 256 * 1024;
    let r = load(
        env,
        env.frontend(),
        "backend",
        &format!("/api/bytes/{size}"),
        4,
        1,
    );
    set_weights(env, saved)?;
    let r = r?;
    if r.ok != r.sent || r.body_bytes != u64::from(r.sent) * size as u64 {
        return Err(format!(
            "{} bytes received of {}: {}",
            r.body_bytes,
            u64::from(r.sent) * size as u64,
            summary(&r)
        ));
    }
    Ok(vec![
        format!("p50_ms={}", r.p50_ms),
        format!("max_ms={}", r.max_ms),
    ])
}

fn no_route_out(env: &Env) -> Outcome {
    let mut namespaces: Vec<(&str, &str)> = env
        .hosts
        .iter()
        .map(|h| (h.spec.name.as_str(), h.ns.as_str()))
        .collect();
    namespaces.push(("gateway", env.gateway.as_str()));
    for (name, ns) in namespaces {
        // TEST-NET addresses: `ip route get` only asks the routing table, it sends nothing.
        for (fam, addr) in [("-4", "192.0.2.1"), ("-6", "2001:db8::1")] {
            let out = in_ns(ns, "ip", "look for a route out")
                .args([fam, "route", "get", addr])
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                return Err(format!(
                    "{name} has a route out: {}",
                    String::from_utf8_lossy(&out.stdout).trim()
                ));
            }
        }
    }
    Ok(vec!["routes_out=0".into()])
}

fn mirror_images_verified(env: &Env) -> Outcome {
    if !env.inputs.containers {
        return Err(
            "container hosts ran bare binaries (--no-containers): no image came from the mirror"
                .into(),
        );
    }
    let mut obs = Vec::new();
    for h in env.hosts.iter().filter(|h| {
        h.spec.kind == crate::profile::Kind::Container
            && matches!(h.spec.role, Role::Control | Role::Workload)
    }) {
        let Some((_, c, p)) = env.pulled.iter().find(|(n, _, _)| *n == h.spec.name) else {
            return Err(format!(
                "{} runs an image that did not come from the mirror",
                h.spec.name
            ));
        };
        if !p.join("index.json").is_file() {
            return Err(format!(
                "{}: the pulled layout {} has no index.json",
                h.spec.name,
                p.display()
            ));
        }
        obs.push(format!("{}={c}", h.spec.name));
    }
    Ok(obs)
}

/// Sum of the samples of `name` whose line contains every one of `parts`.
pub fn metric_sum(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Checks Prometheus text exposition: every sample line is `name{labels} value`.
pub fn check_prometheus(text: &str) -> Result<usize, String> {
    let mut samples = 0;
    for (i, l) in text.lines().enumerate() {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (series, value) = l
            .rsplit_once(' ')
            .ok_or_else(|| format!("line {}: no value: {l}", i + 1))?;
        value
            .parse::<f64>()
            .map_err(|_| format!("line {}: value `{value}` is not a number", i + 1))?;
        let name = series.split('{').next().unwrap_or("");
        let ok_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ok_name || (series.contains('{') && !series.ends_with('}')) {
            return Err(format!("line {}: malformed series `{series}`", i + 1));
        }
        samples += 1;
    }
    Ok(samples)
}

fn metrics_scrape(env: &Env) -> Outcome {
    let fe = env.frontend();
    let r = load(env, fe, "backend", "/api", 3, 1)?;
    if r.ok == 0 {
        return Err(format!("no traffic to measure: {}", summary(&r)));
    }
    let mut obs = Vec::new();
    for h in env.workloads() {
        let (code, text) = env.http_local(h, ADMIN_PORT, "/metrics");
        if code != 200 {
            return Err(format!("{}: /metrics answered {code}", h.spec.name));
        }
        let n = check_prometheus(&text).map_err(|e| format!("{}: /metrics: {e}", h.spec.name))?;
        // Handshakes are counted once a proxy has had traffic; the frontend always has.
        let wants: &[&str] = if h.spec.name == fe.spec.name {
            &[
                "mesh_proxy_tls_handshakes_total",
                "mesh_proxy_control_plane_connected",
            ]
        } else {
            &["mesh_proxy_control_plane_connected"]
        };
        for want in wants {
            if !text.contains(want) {
                return Err(format!("{}: /metrics lacks {want}", h.spec.name));
            }
        }
        obs.push(format!("{}_samples={n}", h.spec.name));
    }
    let ftext = env.http_local(fe, ADMIN_PORT, "/metrics").1;
    if metric_sum(&ftext, "mesh_proxy_requests_total", &["outbound"]) < 1.0 {
        return Err(
            "frontend's /metrics counts no outbound HTTP request after sending some".into(),
        );
    }
    let cp = env.control();
    let (code, text) = env.http_local(cp, CP_OPS_PORT, "/metrics");
    if code != 200 {
        return Err(format!("control plane /metrics answered {code}"));
    }
    let n = check_prometheus(&text).map_err(|e| format!("control plane /metrics: {e}"))?;
    obs.push(format!("control_samples={n}"));
    Ok(obs)
}

/// When a proxy applied configuration `version`, from its own log line ("applied configuration
/// from the control plane version=N", timestamped by the proxy), so the measurement does not
/// include the time it takes to ask every proxy.
fn applied_at(h: &HostRt, version: u64) -> Option<chrono::DateTime<chrono::Utc>> {
    let log = std::fs::read_to_string(h.dir.join("mesh-proxy.log")).ok()?;
    let needle = format!("applied configuration from the control plane version={version}");
    log.lines().find(|l| l.contains(&needle)).and_then(|l| {
        let ts = l.split_whitespace().next()?;
        chrono::DateTime::parse_from_rfc3339(ts)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    })
}

fn config_push(env: &Env) -> Outcome {
    let limit = env.profile.thresholds.config_push_ms;
    let before = current_version(env);
    let stamp = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let mut rules = String::new();
    for h in env.workloads() {
        if let Some(id) = &h.spiffe_id {
            rules.push_str(&format!(
                "\n[[authorization]]\nworkload = \"{id}\"\nname = \"push-probe-{stamp}\"\naction = \"DENY\"\npaths = [\"/push-probe\"]\n"
            ));
        }
    }
    if let Ok(mut x) = env.extra_mesh.lock() {
        x.push_str(&rules);
    }
    let written = chrono::Utc::now();
    env.push_mesh().map_err(|e| e.to_string())?;
    let Some(polled) = env.wait_config_version(before + 1, Duration::from_millis(limit.max(1) * 5))
    else {
        let versions: Vec<String> = env
            .workloads()
            .map(|h| {
                format!(
                    "{}={}",
                    h.spec.name,
                    env.admin_json(h, "/config")["config_version"]
                )
            })
            .collect();
        return Err(format!(
            "version {} did not reach every proxy within {} ms: {}",
            before + 1,
            limit * 5,
            versions.join(", ")
        ));
    };
    let mut slowest = 0i64;
    let mut per = Vec::new();
    for h in env.workloads() {
        let ms = applied_at(h, before + 1)
            .map(|t| (t - written).num_milliseconds())
            .unwrap_or(polled.as_millis() as i64);
        per.push(format!("{}={ms}", h.spec.name));
        slowest = slowest.max(ms);
    }
    if slowest > limit as i64 {
        return Err(format!(
            "the change reached every proxy after {slowest} ms > {limit} ms (per proxy: {})",
            per.join(", ")
        ));
    }
    Ok(vec![
        format!("push_ms={slowest}"),
        format!("per_proxy_ms={}", per.join(",")),
    ])
}

fn upgrade_canary(env: &Env) -> Outcome {
    let step = env.profile.thresholds.load_seconds;
    let bg = background(env, env.frontend(), "backend", step * 3 + 1)?;
    let mut obs = Vec::new();
    for w in [[90, 10], [50, 50], [0, 100]] {
        let d = set_weights(env, w);
        match d {
            Ok(d) => obs.push(format!(
                "weights_{}_{}_push_ms={}",
                w[0],
                w[1],
                d.as_millis()
            )),
            Err(e) => {
                let _ = bg.finish();
                return Err(e);
            }
        }
        std::thread::sleep(Duration::from_secs(step));
    }
    let r = bg.finish()?;
    if r.ok != r.sent || r.sent == 0 {
        return Err(format!(
            "requests failed while moving traffic to line N: {}",
            summary(&r)
        ));
    }
    let after = load(env, env.frontend(), "backend", "/api", 20, 1)?;
    let vers = versions_by_name(env);
    let old: u32 = after
        .names
        .iter()
        .filter(|(n, _)| vers.get(*n).map(String::as_str) != Some("v2"))
        .map(|(_, c)| *c)
        .sum();
    if old > 0 || after.ok != after.sent {
        return Err(format!(
            "after the canary reached 0/100, {old} requests still went to the N-1 backend: {}",
            summary(&after)
        ));
    }
    obs.push(format!("requests_under_load={}", r.sent));
    Ok(obs)
}

fn serials(env: &Env) -> BTreeMap<String, (String, u64)> {
    env.workloads()
        .map(|h| {
            let c = env.admin_json(h, "/certs");
            (
                h.spec.name.clone(),
                (
                    c["serial"].as_str().unwrap_or_default().to_string(),
                    c["trust_bundle_roots"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

fn ca_rotation(env: &Env) -> Outcome {
    let seconds = env.profile.thresholds.load_seconds;
    let before = serials(env);
    let bg = background(env, env.frontend(), "backend", seconds)?;
    std::thread::sleep(Duration::from_secs(1));
    let cp = env.control();
    let bin = env
        .line_of(&cp.spec)
        .bin("mesh-control")
        .map_err(|e| e.to_string())?;
    let rotate = env
        .state_cmd(&bin, "rotate the mesh CA")
        .args(["ca", "rotate", "--state-dir"])
        .arg(&env.cp_state)
        .args(["--overlap", "1h"])
        .run();
    let r = bg.finish()?;
    rotate.map_err(|e| e.to_string())?;
    let after = serials(env);
    if r.ok != r.sent || r.sent == 0 {
        return Err(format!(
            "requests failed during the CA rotation: {}",
            summary(&r)
        ));
    }
    for (name, (serial, roots)) in &after {
        let old = before.get(name).map(|s| s.0.as_str()).unwrap_or("");
        if serial == old || serial.is_empty() {
            return Err(format!(
                "{name} still has certificate {old} after the rotation"
            ));
        }
        if *roots < 2 {
            return Err(format!(
                "{name} trusts {roots} root(s); old and new CA expected during the overlap"
            ));
        }
    }
    Ok(vec![
        format!("requests={}", r.sent),
        format!("renewed={}", after.len()),
    ])
}

fn control_plane_outage(env: &Env) -> Outcome {
    let fe = env.frontend();
    env.stop_main(env.control());
    let deadline = Instant::now() + Duration::from_secs(15);
    while env.admin_json(fe, "/ready")["stale"] != true {
        if Instant::now() > deadline {
            return Err(
                "the frontend's proxy never noticed the control plane was gone (/ready stale)"
                    .into(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = load(env, fe, "backend", "/api", 30, 2);
    let restarted = env.restart_control();
    let r = r?;
    restarted.map_err(|e| format!("the control plane did not come back: {e}"))?;
    if r.ok != r.sent {
        return Err(format!(
            "with the control plane down, requests failed: {}",
            summary(&r)
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stale: Vec<String> = env
            .workloads()
            .filter(|h| env.admin_json(h, "/ready")["stale"] != false)
            .map(|h| h.spec.name.clone())
            .collect();
        if stale.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "proxies did not reconnect within 20 s: {}",
                stale.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(vec![format!("requests_during_outage={}", r.ok)])
}
