//! Brings the portal's htmx from the npm registry (pinned in `web/package-lock.json`) when it is
//! not there yet, so `cargo build` alone yields a binary with htmx embedded; Archer itself never
//! reaches the network for it. The same `npm ci` brings axe-core, which the browser tests inject.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web");
    let htmx = web.join("node_modules/htmx.org/dist/htmx.min.js");
    // axe-core is for the browser tests (a devDependency): brought by the same `npm ci`
    let axe = web.join("node_modules/axe-core/axe.min.js");
    println!("cargo:rerun-if-changed={}", web.join("package-lock.json").display());
    println!("cargo:rerun-if-changed={}", htmx.display());
    if !htmx.exists() || !axe.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&web)
            .status()
            .unwrap_or_else(|e| {
                panic!("running `npm ci` in {} (Node.js's npm is needed to build Archer): {e}", web.display())
            });
        assert!(status.success(), "`npm ci` in {} failed ({status})", web.display());
    }
    assert!(htmx.exists(), "{} is missing after `npm ci`", htmx.display());
}
