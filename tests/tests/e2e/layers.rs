//! The boundaries ARCHITECTURE.md names, checked from the outside so they hold without anyone
//! remembering them: the domain builds without Temporal, a database driver, an async runtime or
//! an HTTP stack; only the store records workflow intents; route modules never import each
//! other; handlers stay thin.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Code without comment lines (doc comments mention what the code must not do).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The triple this machine builds for, as `rustc -vV` reports it.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc).arg("-vV").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc -vV names the host").trim().to_owned()
}

#[test]
fn the_domain_builds_without_temporal_a_database_a_runtime_or_http() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // the host's dependency graph only: `--offline` then needs no crate of another target
    // (a fresh machine's build fetched none), e.g. Android's `jni` under reqwest's verifier
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", &host_triple()])
        .arg("--manifest-path")
        .arg(root().join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes: BTreeMap<String, Vec<String>> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            // normal dependencies only: dev-dependencies do not ship
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
                .map(|d| d["pkg"].as_str().unwrap().to_owned())
                .collect();
            (n["id"].as_str().unwrap().to_owned(), deps)
        })
        .collect();
    let name_of = |id: &str| -> String {
        meta["packages"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap()["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let domain =
        nodes.keys().find(|id| name_of(id) == "archer-domain").expect("archer-domain in the workspace").clone();
    let mut seen = BTreeSet::new();
    let mut stack = vec![domain];
    while let Some(id) = stack.pop() {
        if seen.insert(id.clone()) {
            stack.extend(nodes[&id].iter().cloned());
        }
    }
    let names: BTreeSet<String> = seen.iter().map(|id| name_of(id)).collect();
    let forbidden: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.starts_with("temporalio")
                || n.starts_with("sqlx")
                || n.starts_with("archer-") && *n != "archer-domain"
                || ["tokio", "axum", "hyper", "tonic", "reqwest", "lettre", "postgres"].contains(&n.as_str())
        })
        .collect();
    assert!(forbidden.is_empty(), "archer-domain must stay pure, but depends on {forbidden:?}");
}

#[test]
fn only_the_store_records_workflow_intents() {
    let mut offenders = Vec::new();
    for dir in ["api/src", "workers/src", "orchestrator/src", "orchestrator/domain/src"] {
        for file in rust_files(&root().join(dir)) {
            let text = code(&file);
            if text.contains("outbox::enqueue") || text.contains("Intent::Signal") || text.contains("Intent::Start") {
                offenders.push(file.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    assert!(offenders.is_empty(), "outbox rows are written by store functions only: {offenders:?}");
}

/// The route modules: `api/src/routes/<name>.rs` or `api/src/routes/<name>/`.
fn route_modules() -> BTreeMap<String, Vec<PathBuf>> {
    let dir = root().join("api/src/routes");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" {
            continue;
        }
        let files = if path.is_dir() { rust_files(&path) } else { vec![path] };
        out.insert(name, files);
    }
    out
}

#[test]
fn no_route_module_imports_another() {
    let modules = route_modules();
    let mut offenders = Vec::new();
    for (name, files) in &modules {
        for file in files {
            let text = code(file);
            for other in modules.keys().filter(|o| *o != name) {
                let nested = file.parent().is_some_and(|p| p.file_name().is_some_and(|f| f == name.as_str()));
                let mut paths = vec![format!("crate::routes::{other}")];
                paths.push(if nested { format!("super::super::{other}") } else { format!("super::{other}") });
                for p in paths {
                    let hit = text
                        .match_indices(&p)
                        .any(|(i, _)| !text[i + p.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'));
                    if hit {
                        offenders.push(format!("{} uses {p}", file.strip_prefix(root()).unwrap().display()));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "route modules share through crate::views, never each other: {offenders:#?}");
}

/// Handlers (functions with an OpenAPI path) parse, authorize, call and map: about 60 lines.
#[test]
fn handlers_are_thin() {
    const MAX: usize = 60;
    let mut offenders = Vec::new();
    for files in route_modules().values() {
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let mut i = 0;
            while i < lines.len() {
                if lines[i].starts_with("#[utoipa::path") {
                    let start = (i..lines.len()).find(|&j| lines[j].starts_with("pub async fn")).unwrap();
                    let end = (start..lines.len()).find(|&j| lines[j] == "}").unwrap();
                    let len = end - start + 1;
                    if len > MAX {
                        let name = lines[start].trim_start_matches("pub async fn ").split('(').next().unwrap();
                        offenders
                            .push(format!("{}: {name} has {len} lines", file.strip_prefix(root()).unwrap().display()));
                    }
                    i = end;
                }
                i += 1;
            }
        }
    }
    assert!(offenders.is_empty(), "handlers longer than {MAX} lines: {offenders:#?}");
}
