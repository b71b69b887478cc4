//! The deployment kit under `deploy/` (issue 13) checked against Archer itself, since no
//! container engine, Kubernetes or Helm runs where the team builds: every manifest parses
//! (YAML with serde-saphyr, JSON with serde_json); every `ARCHER_*` variable it sets is a
//! configuration key Archer's own loader accepts, with a value it accepts; ports agree between
//! the listeners, the containers, the Services, the probes and Prometheus; one Archer image tag
//! (the workspace version), one Temporal version and PostgreSQL 15 throughout; grace periods
//! outlast Archer's own shutdown grace; the alert rules are complete; and, against the running
//! system (the API in process, the real `archer worker` binary), every probe path answers and
//! every metric the dashboard and the alert rules query is exposed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use archer_api::config::{Config, DEV_SECRETS_KEY};
use archer_api::devstack::free_port;
use archer_tests::approvals::{laptop, laptop_answers};
use archer_tests::{JWT_SECRET, Options, TestApp, archer_bin, spawn_app_with};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const ARCHER_IMAGE: &str = "ghcr.io/archer-itsm/archer";

/// Every metric Archer exposes (the names are fixed; the dashboard shows each of them).
const ARCHER_METRICS: &[&str] = &[
    "archer_http_requests_total",
    "archer_http_request_duration_seconds",
    "archer_outbox_pending",
    "archer_outbox_oldest_age_seconds",
    "archer_relay_deliveries_total",
    "archer_relay_failures_total",
    "archer_relay_leader",
    "archer_workflow_starts_total",
    "archer_workflow_signals_total",
    "archer_sla_clocks",
    "archer_sla_warnings_total",
    "archer_sla_breaches_total",
    "archer_sla_breach_lag_seconds",
    "archer_approvals_pending",
    "archer_approval_decision_to_next_step_seconds",
    "archer_emails_total",
    "archer_db_pool_connections",
    "archer_db_pool_max_connections",
    "archer_db_pool_acquire_seconds",
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
    "temporal_sticky_cache_size",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every document of a YAML file (`---` separates them), as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The one document of a YAML or JSON file.
fn document(relative: &str) -> Value {
    let path = deploy().join(relative);
    if relative.ends_with(".json") {
        return serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let mut docs = yaml_documents(&path);
    assert_eq!(docs.len(), 1, "{relative} holds one document");
    docs.remove(0)
}

/// Every file under `deploy/`, sorted.
fn deploy_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![deploy()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_manifest(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
}

/// The Kubernetes objects of `deploy/kubernetes/` (not the kustomization or the Helm values).
fn kubernetes_objects() -> Vec<Value> {
    let dir = deploy().join("kubernetes");
    let mut objects = Vec::new();
    for path in deploy_files().into_iter().filter(|p| p.starts_with(&dir) && is_manifest(p)) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "kustomization.yaml" || name == "temporal-values.yaml" {
            continue;
        }
        for doc in yaml_documents(&path) {
            assert!(doc["apiVersion"].is_string() && doc["kind"].is_string(), "{name}: a document without kind: {doc}");
            objects.push(doc);
        }
    }
    objects
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/kubernetes"))
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, found {other}"),
    }
}

/// A port number, whether written as a number or a string.
fn port_of(v: &Value) -> u16 {
    str_of(v).parse().unwrap_or_else(|e| panic!("{v} is not a port: {e}"))
}

/// The port of a `host:port` listen address.
fn listen_port(addr: &str) -> u16 {
    let (host, port) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{addr} is not host:port"));
    assert_eq!(host, "0.0.0.0", "{addr}: a container must listen on every interface, not only its loopback");
    port.parse().unwrap_or_else(|e| panic!("{addr}: {e}"))
}

/// One Archer process as a manifest runs it: its role and the `ARCHER_*` environment it gets.
struct Workload {
    /// Where it is defined, for messages.
    source: String,
    /// `serve`, `worker` or `migrate`.
    role: String,
    env: BTreeMap<String, String>,
    /// The Kubernetes container (`Value::Null` for compose).
    container: Value,
    /// The Kubernetes pod template's spec (`Value::Null` for compose).
    pod: Value,
    /// The compose service (`Value::Null` for Kubernetes).
    service: Value,
}

impl Workload {
    fn var(&self, name: &str) -> &str {
        self.env.get(name).unwrap_or_else(|| panic!("{}: {name} is not set", self.source))
    }
}

/// Compose `environment:`, as a map or as a list of `KEY=VALUE`.
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), str_of(v))).collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let s = str_of(i);
                let (k, v) = s.split_once('=').unwrap_or_else(|| panic!("environment entry {s} has no ="));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Value::Null => BTreeMap::new(),
        other => panic!("unexpected environment: {other}"),
    }
}

fn is_archer_image(image: &Value) -> bool {
    image.as_str().is_some_and(|i| i.starts_with(ARCHER_IMAGE))
}

/// The first argument given to the image's `archer` entrypoint.
fn role_of(args: &Value) -> String {
    let args = args.as_array().unwrap_or_else(|| panic!("expected a list of arguments, found {args}"));
    str_of(&args[0])
}

fn compose_workloads() -> Vec<Workload> {
    let compose = document("compose/compose.yaml");
    let services = compose["services"].as_object().expect("compose services");
    services
        .iter()
        .filter(|(_, s)| is_archer_image(&s["image"]))
        .map(|(name, s)| Workload {
            source: format!("compose service {name}"),
            role: role_of(&s["command"]),
            env: compose_env(s),
            container: Value::Null,
            pod: Value::Null,
            service: s.clone(),
        })
        .collect()
}

/// A container's environment: its ConfigMaps and Secrets (`envFrom`), then its `env`.
fn container_env(objects: &[Value], container: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(name) = from["configMapRef"]["name"].as_str() {
            let cm = object(objects, "ConfigMap", name);
            for (k, v) in cm["data"].as_object().into_iter().flatten() {
                env.insert(k.clone(), str_of(v));
            }
        }
        if let Some(name) = from["secretRef"]["name"].as_str() {
            let secret = object(objects, "Secret", name);
            assert!(
                secret["data"].is_null(),
                "Secret {name}: write placeholders under stringData, which this test reads"
            );
            for (k, v) in secret["stringData"].as_object().into_iter().flatten() {
                env.insert(k.clone(), str_of(v));
            }
        }
    }
    for e in container["env"].as_array().into_iter().flatten() {
        if let Some(v) = e.get("value") {
            env.insert(str_of(&e["name"]), str_of(v));
        }
    }
    env
}

fn kubernetes_workloads(objects: &[Value]) -> Vec<Workload> {
    let mut out = Vec::new();
    for o in objects.iter().filter(|o| o["kind"] == "Deployment" || o["kind"] == "Job") {
        let pod = &o["spec"]["template"]["spec"];
        for c in pod["containers"].as_array().expect("containers") {
            if !is_archer_image(&c["image"]) {
                continue;
            }
            out.push(Workload {
                source: format!("{} {} container {}", o["kind"], str_of(&o["metadata"]["name"]), str_of(&c["name"])),
                role: role_of(&c["args"]),
                env: container_env(objects, c),
                container: c.clone(),
                pod: pod.clone(),
                service: Value::Null,
            });
        }
    }
    out
}

/// The `ENV` instructions of deploy/Dockerfile.
fn dockerfile_env() -> BTreeMap<String, String> {
    let text = read(&deploy().join("Dockerfile")).replace("\\\n", " ");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("ENV "))
        .flat_map(|rest| rest.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("Dockerfile ENV {kv}: write KEY=VALUE"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// An environment value as Archer's loader reads it (figment's `Env` provider): a boolean or a
/// number when it is one, else a string.
fn env_value(text: &str) -> Value {
    if let Ok(b) = text.parse::<bool>() {
        return json!(b);
    }
    if let Ok(i) = text.parse::<i64>() {
        return json!(i);
    }
    if let Ok(f) = text.parse::<f64>() {
        return json!(f);
    }
    json!(text)
}

/// Loads `env` into Archer's configuration, as `archer serve`/`worker`/`migrate` would read it
/// from the environment. The secrets start empty, so a workload that does not set them fails
/// (the test process's own `ARCHER_SECRETS_KEY`, from `archer dev --exec`, does not count).
fn load_config(source: &str, env: &BTreeMap<String, String>, secrets: &[(&str, &str)]) -> Config {
    let mut sources = Config::figment(None).set("jwt_secret", "").set("secrets_key", "");
    for (k, v) in secrets {
        sources = sources.set(k, v);
    }
    for (name, value) in env {
        let key = name.strip_prefix("ARCHER_").unwrap_or_else(|| panic!("{source}: {name} is not an ARCHER_ variable"));
        assert_eq!(key, key.to_ascii_uppercase(), "{source}: {name} must be upper case, as the README's variables are");
        sources = sources.set(&key.to_ascii_lowercase(), env_value(value));
    }
    sources.extract().unwrap_or_else(|e| panic!("{source}: Archer refuses its ARCHER_* settings: {e}"))
}

fn archer_only(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter().filter(|(k, _)| k.starts_with("ARCHER_")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Every `ARCHER_*` name anywhere in a parsed manifest: mapping keys and `name:` values.
fn archer_names(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k.starts_with("ARCHER_") {
                    out.insert(k.clone());
                }
                if k == "name"
                    && let Some(s) = child.as_str()
                    && s.starts_with("ARCHER_")
                {
                    out.insert(s.to_owned());
                }
                archer_names(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| archer_names(i, out)),
        _ => {}
    }
}

/// Every string under an `image` key.
fn images(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == "image"
                    && let Some(s) = child.as_str()
                {
                    out.push(s.to_owned());
                }
                images(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| images(i, out)),
        _ => {}
    }
}

fn tag_of(image: &str) -> &str {
    image.rsplit_once(':').map(|(_, t)| t).unwrap_or_else(|| panic!("{image} has no tag: pin a version"))
}

/// The compose images whose repository is `repo`, with their tags.
fn compose_tags(compose: &Value, repo: &str) -> BTreeSet<String> {
    let mut all = Vec::new();
    images(&compose["services"], &mut all);
    all.iter().filter(|i| i.rsplit_once(':').is_some_and(|(r, _)| r == repo)).map(|i| tag_of(i).to_owned()).collect()
}

/// A compose duration such as `45s` or `1m30s`, in seconds.
fn compose_seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut digits = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = digits.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                digits.clear();
            }
            _ => panic!("{text}: not a duration compose reads"),
        }
    }
    assert!(digits.is_empty(), "{text}: give the unit");
    total
}

/// A container port, by number or by the name of one of the container's ports.
fn resolve_port(container: &Value, port: &Value) -> u16 {
    if let Some(name) = port.as_str()
        && name.parse::<u16>().is_err()
    {
        let p = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("container {} has no port named {name}", container["name"]));
        return port_of(&p["containerPort"]);
    }
    port_of(port)
}

/// The probes of a container: (kind, path, port).
fn probes(container: &Value) -> Vec<(&'static str, String, u16)> {
    ["startupProbe", "livenessProbe", "readinessProbe"]
        .into_iter()
        .filter_map(|kind| {
            let get = container[kind].get("httpGet")?;
            Some((kind, str_of(&get["path"]), resolve_port(container, &get["port"])))
        })
        .collect()
}

/// The metric names a PromQL expression reads (`archer_*` and `temporal_*`; quoted label
/// values and Grafana's `$__` variables are not names).
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let mut chars = expr.chars().peekable();
    let mut ident = String::new();
    let flush = |ident: &mut String, out: &mut BTreeSet<String>| {
        if ident.starts_with("archer_") || ident.starts_with("temporal_") {
            out.insert(std::mem::take(ident));
        }
        ident.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                flush(&mut ident, out);
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' => ident.push(c),
            _ => flush(&mut ident, out),
        }
    }
    flush(&mut ident, out);
}

fn alert_rules() -> Vec<Value> {
    let rules = document("prometheus/archer-alerts.yaml");
    let groups = rules["groups"].as_array().expect("groups");
    assert!(!groups.is_empty(), "archer-alerts.yaml has no groups");
    groups.iter().flat_map(|g| g["rules"].as_array().expect("each group has rules").clone()).collect()
}

/// Every expression of the dashboard's panels, with the panel's title.
fn dashboard_exprs() -> Vec<(String, String)> {
    let dashboard = document("grafana/archer-dashboard.json");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push((str_of(&panel["title"]), str_of(&t["expr"])));
        }
    }
    out
}

/// (file, metric) for every metric the dashboard and the alert rules read.
fn referenced_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let mut by_metric: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |file: &str, expr: &str| {
        let mut names = BTreeSet::new();
        metric_names(expr, &mut names);
        for n in names {
            by_metric.entry(n).or_default().insert(file.to_owned());
        }
    };
    for (_, expr) in dashboard_exprs() {
        add("grafana/archer-dashboard.json", &expr);
    }
    for rule in alert_rules() {
        add("prometheus/archer-alerts.yaml", &str_of(&rule["expr"]));
    }
    by_metric
}

/// The sample names of a Prometheus text exposition (`name{labels} value` lines).
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// The workspace's Rust version, from Cargo.toml.
fn workspace_rust_version() -> String {
    read(&root().join("Cargo.toml"))
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version in the workspace Cargo.toml")
        .trim_matches('"')
        .to_owned()
}

/// Every manifest under deploy/ parses, and nothing there escapes these checks: the files are
/// the compose setup, the Kubernetes manifests, the Helm values, the dashboard, the alert rules,
/// the Dockerfile and its ignore file, and the README.
#[test]
fn every_manifest_parses() {
    let mut parsed = Vec::new();
    for path in deploy_files() {
        let relative = path.strip_prefix(deploy()).unwrap().to_string_lossy().into_owned();
        if is_manifest(&path) {
            let docs = if relative.ends_with(".json") {
                vec![serde_json::from_str::<Value>(&read(&path)).unwrap_or_else(|e| panic!("{relative}: {e}"))]
            } else {
                yaml_documents(&path)
            };
            assert!(docs.iter().all(|d| d.is_object()), "{relative}: every document is a mapping");
            assert!(!docs.is_empty(), "{relative} is empty");
            parsed.push(relative);
        } else {
            assert!(
                ["README.md", "Dockerfile", "Dockerfile.dockerignore"].contains(&relative.as_str()),
                "deploy/{relative} is neither a manifest nor a file this test knows: check it here"
            );
        }
    }
    for expected in [
        "compose/compose.yaml",
        "compose/prometheus.yml",
        "kubernetes/kustomization.yaml",
        "kubernetes/temporal-values.yaml",
        "grafana/archer-dashboard.json",
        "prometheus/archer-alerts.yaml",
    ] {
        assert!(parsed.iter().any(|p| p == expected), "deploy/{expected} is missing; parsed: {parsed:?}");
    }
    // the kustomization names every Kubernetes manifest of Archer's, and only existing files
    let kustomization = document("kubernetes/kustomization.yaml");
    let listed: BTreeSet<String> =
        kustomization["resources"].as_array().expect("resources").iter().map(str_of).collect();
    let on_disk: BTreeSet<String> = parsed
        .iter()
        .filter_map(|p| p.strip_prefix("kubernetes/"))
        .filter(|p| *p != "kustomization.yaml" && *p != "temporal-values.yaml")
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, on_disk, "kustomization.yaml's resources and the files in deploy/kubernetes differ");
}

/// Every `ARCHER_*` variable set anywhere (compose environments, the ConfigMap, the Secret's
/// placeholders, container `env`, the Dockerfile's `ENV`) is a configuration key, and each
/// process's whole environment is one Archer's loader (which refuses unknown keys and checks
/// values) accepts, secrets included.
#[test]
fn every_archer_variable_is_a_configuration_key_archer_accepts() {
    let objects = kubernetes_objects();
    let workloads: Vec<Workload> = compose_workloads().into_iter().chain(kubernetes_workloads(&objects)).collect();
    let roles: BTreeSet<(bool, &str)> = workloads.iter().map(|w| (w.pod.is_null(), w.role.as_str())).collect();
    for role in ["serve", "worker", "migrate"] {
        assert!(roles.contains(&(true, role)), "compose runs no `archer {role}`");
        assert!(roles.contains(&(false, role)), "deploy/kubernetes runs no `archer {role}`");
    }
    let mut checked = BTreeSet::new();
    for w in &workloads {
        let env = archer_only(&w.env);
        for required in [
            "ARCHER_DATABASE_URL",
            "ARCHER_TEMPORAL_ADDRESS",
            "ARCHER_JWT_SECRET",
            "ARCHER_SECRETS_KEY",
            "ARCHER_SMTP_URL",
        ] {
            assert!(
                env.contains_key(required),
                "{}: {required} is not set (its default is for `archer dev`)",
                w.source
            );
        }
        let config = load_config(&w.source, &env, &[]);
        assert_eq!(
            config.log_format,
            archer_api::config::LogFormat::Json,
            "{}: log JSON lines in containers",
            w.source
        );
        checked.extend(env.into_keys());
    }
    // the image's own defaults, under the secrets a deployment adds
    let image_env = dockerfile_env();
    load_config("deploy/Dockerfile ENV", &image_env, &[("jwt_secret", JWT_SECRET), ("secrets_key", DEV_SECRETS_KEY)]);
    checked.extend(image_env.into_keys());

    // nothing named ARCHER_* in any manifest escaped the checks above
    let mut anywhere = BTreeSet::new();
    for path in deploy_files().into_iter().filter(|p| is_manifest(p)) {
        let docs = if path.extension().is_some_and(|e| e == "json") {
            vec![serde_json::from_str(&read(&path)).unwrap()]
        } else {
            yaml_documents(&path)
        };
        docs.iter().for_each(|d| archer_names(d, &mut anywhere));
    }
    let unchecked: Vec<_> = anywhere.difference(&checked).collect();
    assert!(unchecked.is_empty(), "ARCHER_* names no Archer process of the manifests gets: {unchecked:?}");
}

/// The API listens where its container port, its Service, its probes and Prometheus point,
/// and the worker's probe listener likewise; containers listen on every interface.
#[test]
fn ports_agree_between_listeners_containers_services_probes_and_prometheus() {
    // compose
    let mut compose_ports = BTreeMap::new();
    for w in compose_workloads() {
        let port = match w.role.as_str() {
            "serve" => listen_port(w.var("ARCHER_LISTEN")),
            "worker" => listen_port(w.var("ARCHER_WORKER_LISTEN")),
            _ => continue,
        };
        let mut container_ports: Vec<u16> = w.service["expose"].as_array().into_iter().flatten().map(port_of).collect();
        for p in w.service["ports"].as_array().into_iter().flatten() {
            let text = str_of(p);
            let container = text.rsplit(':').next().unwrap().trim_end_matches("/tcp");
            container_ports.push(container.parse().unwrap_or_else(|e| panic!("{}: port {text}: {e}", w.source)));
        }
        assert!(container_ports.contains(&port), "{}: listens on {port} but publishes {container_ports:?}", w.source);
        compose_ports.insert(w.role.clone(), port);
    }
    let compose = document("compose/compose.yaml");
    let prometheus = document("compose/prometheus.yml");
    for (job, service, role) in [("archer-api", "archer-api", "serve"), ("archer-worker", "archer-worker", "worker")] {
        let config = prometheus["scrape_configs"]
            .as_array()
            .expect("scrape_configs")
            .iter()
            .find(|c| c["job_name"] == job)
            .unwrap_or_else(|| panic!("prometheus.yml has no job {job}"));
        assert_eq!(config["metrics_path"].as_str().unwrap_or("/metrics"), "/metrics", "job {job}");
        let sd = &config["dns_sd_configs"][0];
        assert!(sd["names"].as_array().unwrap().iter().any(|n| n == service), "job {job} must find {service}");
        assert_eq!(
            port_of(&sd["port"]),
            compose_ports[role],
            "job {job} scrapes another port than {service} listens on"
        );
        assert!(is_archer_image(&compose["services"][service]["image"]), "{service} is not an Archer service");
    }

    // Kubernetes
    let objects = kubernetes_objects();
    let mut seen = BTreeSet::new();
    for w in kubernetes_workloads(&objects) {
        let var = match w.role.as_str() {
            "serve" => "ARCHER_LISTEN",
            "worker" => "ARCHER_WORKER_LISTEN",
            _ => continue,
        };
        let port = listen_port(w.var(var));
        let declared: Vec<u16> =
            w.container["ports"].as_array().into_iter().flatten().map(|p| port_of(&p["containerPort"])).collect();
        assert_eq!(declared, vec![port], "{}: containerPort and {var} differ", w.source);
        let probes = probes(&w.container);
        assert!(probes.iter().any(|p| p.0 == "livenessProbe") && probes.iter().any(|p| p.0 == "readinessProbe"));
        for (kind, path, probe_port) in probes {
            assert_eq!(probe_port, port, "{}: {kind} {path} goes to another port than {var}", w.source);
        }
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["spec"]["template"]["spec"] == w.pod)
            .expect("the workload's Deployment");
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{}", w.source);
        assert_eq!(port_of(&annotations["prometheus.io/port"]), port, "{}: Prometheus scrapes another port", w.source);
        assert_eq!(annotations["prometheus.io/path"], "/metrics", "{}", w.source);
        // the Service in front of it sends to that port
        let labels = deployment["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
        let services: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Service")
            .filter(|s| s["spec"]["selector"].as_object().unwrap().iter().all(|(k, v)| labels.get(k) == Some(v)))
            .collect();
        assert_eq!(services.len(), 1, "{}: one Service selects its pods", w.source);
        for p in services[0]["spec"]["ports"].as_array().unwrap() {
            assert_eq!(resolve_port(&w.container, &p["targetPort"]), port, "{}: the Service's targetPort", w.source);
        }
        seen.insert(w.role.clone());
    }
    assert_eq!(seen, BTreeSet::from(["serve".to_owned(), "worker".to_owned()]));

    // every PodDisruptionBudget and the autoscaler point at a Deployment that exists
    let deployments: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Deployment").collect();
    for pdb in objects.iter().filter(|o| o["kind"] == "PodDisruptionBudget") {
        let selector = pdb["spec"]["selector"]["matchLabels"].as_object().unwrap();
        assert!(
            deployments.iter().any(|d| d["spec"]["selector"]["matchLabels"].as_object() == Some(selector)),
            "PodDisruptionBudget {} selects no Deployment's pods",
            pdb["metadata"]["name"]
        );
    }
    for d in &deployments {
        let name = &d["metadata"]["name"];
        assert!(
            objects.iter().any(|o| o["kind"] == "PodDisruptionBudget"
                && o["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]),
            "Deployment {name} has no PodDisruptionBudget"
        );
    }
    let hpa = object(&objects, "HorizontalPodAutoscaler", "archer-worker");
    let target = object(&objects, "Deployment", &str_of(&hpa["spec"]["scaleTargetRef"]["name"]));
    assert!(target["spec"]["replicas"].is_null(), "the autoscaler owns the worker's replicas: leave them out");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    let container = &target["spec"]["template"]["spec"]["containers"][0];
    assert!(container["resources"]["requests"]["cpu"].is_string(), "CPU utilisation needs a CPU request");
}

/// One Archer image, tagged with the workspace version, everywhere; the Temporal server,
/// admin tools and Web UI at the same versions in compose and in the Helm values; Temporal on
/// PostgreSQL; PostgreSQL 15; the image built with the workspace's Rust.
#[test]
fn images_and_versions_agree() {
    let version = env!("CARGO_PKG_VERSION");
    let compose = document("compose/compose.yaml");
    let mut all = Vec::new();
    images(&compose["services"], &mut all);
    for o in kubernetes_objects() {
        images(&o, &mut all);
    }
    let archer: Vec<&String> = all.iter().filter(|i| i.starts_with(ARCHER_IMAGE)).collect();
    assert!(
        archer.len() >= 6,
        "expected the Archer image in 3 compose services and 3 Kubernetes workloads: {archer:?}"
    );
    for image in &archer {
        assert_eq!(
            image.as_str(),
            format!("{ARCHER_IMAGE}:{version}"),
            "the Archer image is tagged with Cargo's version"
        );
    }
    for image in &all {
        assert_ne!(tag_of(image), "latest", "{image}: pin a version");
    }
    let kustomization = document("kubernetes/kustomization.yaml");
    assert_eq!(kustomization["images"][0]["name"], ARCHER_IMAGE);
    assert_eq!(kustomization["images"][0]["newTag"], version);
    assert_eq!(kustomization["labels"][0]["pairs"]["app.kubernetes.io/version"], version);
    let job = kubernetes_objects().into_iter().find(|o| o["kind"] == "Job").expect("the migration Job");
    assert!(
        str_of(&job["metadata"]["name"]).ends_with(&version.replace('.', "-")),
        "the migration Job is named after the release it migrates to: {}",
        job["metadata"]["name"]
    );

    // Temporal: the same versions in compose and the Helm values
    let values = document("kubernetes/temporal-values.yaml");
    let server = str_of(&values["server"]["image"]["tag"]);
    assert_eq!(values["server"]["image"]["repository"], "temporalio/server");
    assert_eq!(compose_tags(&compose, "temporalio/server"), BTreeSet::from([server.clone()]));
    assert_eq!(str_of(&values["admintools"]["image"]["tag"]), server, "admin tools match the server");
    assert_eq!(compose_tags(&compose, "temporalio/admin-tools"), BTreeSet::from([server.clone()]));
    assert_eq!(values["web"]["enabled"], true, "the Helm values enable the Web UI");
    let ui = str_of(&values["web"]["image"]["tag"]);
    assert_eq!(compose_tags(&compose, "temporalio/ui"), BTreeSet::from([ui]));
    assert!(server.starts_with("1.") && server.split('.').nth(1).and_then(|m| m.parse::<u32>().ok()) >= Some(29));
    for store in ["default", "visibility"] {
        let sql = &values["server"]["config"]["persistence"]["datastores"][store]["sql"];
        assert!(str_of(&sql["pluginName"]).starts_with("postgres"), "Temporal's {store} store is on PostgreSQL");
    }
    assert!(compose_tags(&compose, "temporalio/auto-setup").is_empty(), "auto-setup is deprecated");

    // PostgreSQL 15
    let postgres = compose_tags(&compose, "postgres");
    assert!(!postgres.is_empty() && postgres.iter().all(|t| t == "15" || t.starts_with("15.")), "{postgres:?}");

    // the image builds with the Rust the workspace asks for
    let dockerfile = read(&deploy().join("Dockerfile"));
    let rust = dockerfile.lines().find_map(|l| l.strip_prefix("ARG RUST_VERSION=")).expect("ARG RUST_VERSION");
    assert_eq!(rust, workspace_rust_version(), "deploy/Dockerfile's Rust and Cargo.toml's rust-version differ");
    assert!(dockerfile.contains("cargo build --release --locked --bin archer"));
    assert!(dockerfile.lines().any(|l| l.starts_with("USER ") && !l.contains("root") && !l.contains(" 0")));
}

/// Kubernetes and compose give each long-running process more time than Archer's own
/// `shutdown_grace_secs` (plus the API's preStop pause), so what it finishes in that time is
/// never cut off by SIGKILL.
#[test]
fn termination_grace_outlasts_archer_shutdown_grace() {
    let objects = kubernetes_objects();
    for w in kubernetes_workloads(&objects).into_iter().filter(|w| w.role != "migrate") {
        let grace: u64 = w.env.get("ARCHER_SHUTDOWN_GRACE_SECS").map_or(30, |v| v.parse().unwrap());
        let pre_stop: u64 = match &w.container["lifecycle"]["preStop"]["exec"]["command"] {
            Value::Array(cmd) if cmd.first() == Some(&json!("sleep")) => str_of(&cmd[1]).parse().unwrap(),
            Value::Null => 0,
            other => panic!("{}: a preStop this test does not know: {other}", w.source),
        };
        let termination = w.pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: set terminationGracePeriodSeconds", w.source));
        assert!(
            termination > grace + pre_stop,
            "{}: terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop} s + shutdown grace {grace} s",
            w.source
        );
    }
    for w in compose_workloads().into_iter().filter(|w| w.role != "migrate") {
        let grace: u64 = w.env.get("ARCHER_SHUTDOWN_GRACE_SECS").map_or(30, |v| v.parse().unwrap());
        let stop = w.service["stop_grace_period"]
            .as_str()
            .map(compose_seconds)
            .unwrap_or_else(|| panic!("{}: set stop_grace_period (compose's default is 10 s)", w.source));
        assert!(stop > grace, "{}: stop_grace_period {stop} s must exceed the shutdown grace {grace} s", w.source);
    }
}

/// Every alert rule has a name, an expression, a `for`, a severity, a summary, a description
/// and a runbook; compose's Prometheus loads the very rules file (mounted) and Grafana the very
/// dashboard file, each where its configuration looks.
#[test]
fn alert_rules_are_complete_and_compose_loads_the_shipped_files() {
    let rules = alert_rules();
    assert!(rules.len() >= 8, "{} rules", rules.len());
    let mut names = BTreeSet::new();
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap_or_else(|| panic!("a rule without `alert`: {rule}"));
        assert!(name.starts_with("Archer"), "{name}: Archer's alerts are named Archer*");
        assert!(names.insert(name.to_owned()), "{name} is defined twice");
        assert!(!str_of(&rule["expr"]).trim().is_empty(), "{name}: no expr");
        let r#for = rule["for"].as_str().unwrap_or_else(|| panic!("{name}: no `for`"));
        assert!(r#for.ends_with('s') || r#for.ends_with('m') || r#for.ends_with('h'), "{name}: for {for}");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_else(|| panic!("{name}: no labels.severity"));
        assert!(["warning", "critical"].contains(&severity), "{name}: severity {severity}");
        for annotation in ["summary", "description", "runbook"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name}: no annotations.{annotation}");
        }
    }
    for required in [
        "ArcherRelayStalled",
        "ArcherRelayNoLeader",
        "ArcherOutboxAging",
        "ArcherSlaBreachLagHigh",
        "ArcherEmailFailing",
        "ArcherEmailOutcomeUnknown",
        "ArcherNoWorkerPolling",
        "ArcherApiErrorRatioHigh",
        "ArcherDbPoolSaturated",
    ] {
        assert!(names.contains(required), "no {required} alert");
    }

    // compose mounts the shipped files, where Prometheus and Grafana read them
    let compose = document("compose/compose.yaml");
    let compose_dir = deploy().join("compose");
    let mount = |service: &str, source: &str| -> String {
        compose["services"][service]["volumes"]
            .as_array()
            .unwrap_or_else(|| panic!("{service} mounts nothing"))
            .iter()
            .map(str_of)
            .find_map(|v| {
                let mut parts = v.split(':');
                let (from, to) = (parts.next()?, parts.next()?);
                (compose_dir.join(from).canonicalize().ok()? == deploy().join(source)).then(|| to.to_owned())
            })
            .unwrap_or_else(|| panic!("{service} does not mount deploy/{source}"))
    };
    let rules_at = mount("prometheus", "prometheus/archer-alerts.yaml");
    let prometheus = document("compose/prometheus.yml");
    assert!(prometheus["rule_files"].as_array().unwrap().iter().any(|f| *f == json!(rules_at)), "rule_files");
    assert!(
        mount("prometheus", "compose/prometheus.yml") == "/etc/prometheus/prometheus.yml",
        "Prometheus reads /etc/prometheus/prometheus.yml"
    );
    let dashboard_at = mount("grafana", "grafana/archer-dashboard.json");
    let provisioning_at = mount("grafana", "compose/grafana/provisioning");
    assert_eq!(provisioning_at, "/etc/grafana/provisioning");
    let provider = document("compose/grafana/provisioning/dashboards/archer.yaml");
    let dir = str_of(&provider["providers"][0]["options"]["path"]);
    assert!(dashboard_at.starts_with(&format!("{dir}/")), "Grafana reads dashboards from {dir}, not {dashboard_at}");
}

/// The dashboard reads every panel through its `${datasource}` variable (a Prometheus data
/// source picked when it is imported) and shows every metric Archer exposes.
#[test]
fn the_dashboard_uses_its_datasource_variable_and_shows_every_metric() {
    let dashboard = document("grafana/archer-dashboard.json");
    let vars = dashboard["templating"]["list"].as_array().expect("templating");
    let ds = vars.iter().find(|v| v["name"] == "datasource").expect("a `datasource` variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "panel id {} twice", panel["id"]);
        if panel["type"] == "row" {
            continue;
        }
        let title = str_of(&panel["title"]);
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title}");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title} has no targets"));
        assert!(!targets.is_empty(), "panel {title} has no targets");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {title}");
            assert!(!str_of(&t["expr"]).trim().is_empty(), "panel {title}: empty expr");
        }
    }
    let shown: BTreeSet<String> = referenced_metrics()
        .into_iter()
        .filter(|(_, files)| files.contains("grafana/archer-dashboard.json"))
        .map(|(m, _)| m.trim_end_matches("_bucket").to_owned())
        .collect();
    let missing: Vec<_> = ARCHER_METRICS.iter().filter(|m| !shown.contains(**m)).collect();
    assert!(missing.is_empty(), "the dashboard does not show {missing:?}");
}

/// The real `archer worker` binary, configured through its environment as a container is,
/// serving `/health`, `/ready` and `/metrics` on `ARCHER_WORKER_LISTEN`.
struct WorkerProcess {
    child: tokio::process::Child,
    base: String,
}

impl WorkerProcess {
    async fn start(app: &TestApp) -> WorkerProcess {
        let port = free_port().expect("a free port");
        let mut cmd = tokio::process::Command::new(archer_bin());
        cmd.arg("worker")
            .env("ARCHER_DATABASE_URL", &app.database_url)
            .env("ARCHER_TEMPORAL_ADDRESS", app.config.temporal_address.as_str())
            .env("ARCHER_TEMPORAL_NAMESPACE", &app.config.temporal_namespace)
            .env("ARCHER_TASK_QUEUE", &app.task_queue)
            .env("ARCHER_JWT_SECRET", JWT_SECRET)
            .env("ARCHER_SECRETS_KEY", DEV_SECRETS_KEY)
            .env("ARCHER_SMTP_URL", app.mail.url().as_str())
            .env("ARCHER_PUBLIC_URL", &app.base)
            .env("ARCHER_WORKER_LISTEN", format!("127.0.0.1:{port}"))
            .env("ARCHER_SHUTDOWN_GRACE_SECS", "30")
            .env("ARCHER_LOG", if std::env::var_os("TEST_LOG").is_some() { "info" } else { "warn" })
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn archer worker");
        WorkerProcess { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// SIGTERM, as Kubernetes and compose stop it: it exits successfully within its grace.
    async fn stop(mut self) {
        let pid = self.child.id().expect("the worker runs") as i32;
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .expect("archer worker stops within its shutdown grace")
            .expect("wait for archer worker");
        assert!(status.success(), "archer worker exited with {status} on SIGTERM");
    }
}

/// GETs `url` until it answers 200 (a process that has just started may not be ready yet).
async fn answers_ok(http: &reqwest::Client, url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let last = match http.get(url).timeout(Duration::from_secs(5)).send().await {
            Ok(r) if r.status() == 200 => return,
            Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        assert!(tokio::time::Instant::now() < deadline, "{url} did not answer 200 within 90 s; last: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every probe the Kubernetes manifests give the API and the worker answers 200 on the running
/// system: the API's on its listener, the worker's on the real `archer worker`'s
/// `ARCHER_WORKER_LISTEN`; and the worker stops cleanly on SIGTERM, as a rollout stops it.
#[tokio::test]
async fn every_probe_path_answers_on_the_running_api_and_worker() {
    let app = spawn_app_with(Options { worker: false, relay: true }).await;
    let worker = WorkerProcess::start(&app).await;
    let objects = kubernetes_objects();
    let mut probed = BTreeSet::new();
    for w in kubernetes_workloads(&objects) {
        let base = match w.role.as_str() {
            "serve" => app.base.clone(),
            "worker" => worker.base.clone(),
            _ => continue,
        };
        for (_, path, _) in probes(&w.container) {
            answers_ok(&app.http, &format!("{base}{path}")).await;
            probed.insert((w.role.clone(), path));
        }
    }
    for role in ["serve", "worker"] {
        for path in ["/health", "/ready"] {
            assert!(probed.contains(&(role.to_owned(), path.to_owned())), "no {path} probe for `archer {role}`");
        }
    }
    // and Prometheus' path on both
    answers_ok(&app.http, &format!("{}/metrics", app.base)).await;
    answers_ok(&app.http, &format!("{}/metrics", worker.base)).await;
    worker.stop().await;
    app.stop().await;
}

/// Every `archer_*` and `temporal_*` metric the dashboard and the alert rules query is exposed
/// by a running API or worker (scraped after the system has done some work: tickets created
/// and changed, a catalog request asking its approver by email), so no panel stays empty and
/// no alert watches a name that does not exist.
#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_query_is_exposed() {
    let app = spawn_app_with(Options { worker: false, relay: true }).await;
    let worker = WorkerProcess::start(&app).await;
    answers_ok(&app.http, &format!("{}/ready", worker.base)).await;

    // some work: a ticket started and signalled, a request whose approver is emailed
    let t = app.tenant().await;
    let incident = app.incident(&t.agent, "Printer on fire").await;
    let number = str_of(&incident["number"]);
    app.set_status(&t.agent, &number, "in_progress").await;
    let lp = laptop(&app).await;
    let r = app.submit(&lp.employee, &lp.item, laptop_answers()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let request = str_of(&r.json["number"]);
    app.approval_mail(&lp.t.manager, &request).await;
    app.outbox_drained().await;

    let referenced = referenced_metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut exposed = BTreeSet::new();
        let mut failed = Vec::new();
        for base in [&app.base, &worker.base] {
            let url = format!("{base}/metrics");
            match app.http.get(&url).timeout(Duration::from_secs(10)).send().await {
                Ok(r) if r.status() == 200 => exposed.extend(exposed_names(&r.text().await.unwrap_or_default())),
                Ok(r) => failed.push(format!("{url} answered {}", r.status())),
                Err(e) => failed.push(format!("{url} failed: {e}")),
            }
        }
        let missing: Vec<String> = referenced
            .iter()
            .filter(|(m, _)| !exposed.contains(*m))
            .map(|(m, files)| format!("{m} (read by {files:?})"))
            .collect();
        if missing.is_empty() && failed.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scrapes that failed: {failed:?}\nnot exposed by the running API or worker:\n  {}",
            missing.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    worker.stop().await;
    app.stop().await;
}
