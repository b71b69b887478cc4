//! Headless Chromium for tests of Archer's web pages, over WebDriver (chromedriver + fantoccini).
//!
//! [`Browser::start`] runs a chromedriver of its own on a free loopback port and opens one headless
//! Chromium session on it, with a fresh, empty profile in a temporary directory. Both come from
//! Debian's `chromium` and `chromium-driver` packages, which `./dev test` installs;
//! `ARCHER_CHROMIUM` and `ARCHER_CHROMEDRIVER` point at other binaries. Chromium runs without its
//! sandbox (tests run as root) and with everything that would reach Google's hosts turned off (the
//! network here is closed), so it only loads the pages a test opens.
//!
//! No process outlives a `Browser`. [`Browser::close`] ends the session and stops chromedriver;
//! dropping a `Browser` that was not closed (its test panicked) kills chromedriver, Chromium and
//! all their helpers at once. Killing chromedriver alone would not do: Chromium goes on running
//! when its chromedriver dies, whatever the signal. Only a test process that is killed outright
//! (SIGKILL, abort) leaves them behind.
//!
//! Everything fails by panicking with what went wrong, the page's URL and what it says, so a test
//! reads as a list of steps.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use archer_api::devstack::free_port;
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How long [`Browser::text`], [`Browser::fill`] and [`Browser::click`] wait for their element.
pub const ELEMENT_WAIT: Duration = Duration::from_secs(10);

/// Headless, unsandboxed (we are root), and quiet: without these Chromium keeps trying Google's
/// hosts (updates, sync, QUIC probes, first-run pages). `--user-data-dir` is added per browser.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// A headless Chromium driven through a chromedriver of its own.
pub struct Browser {
    client: Client,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver on a free port, waits until it answers, and opens a headless Chromium
    /// session with a fresh profile. Panics if chromium or chromedriver is missing.
    pub async fn start() -> Browser {
        Browser::start_with(true).await
    }

    /// A browser with JavaScript turned off, as some people browse (and as a page must work).
    pub async fn without_javascript() -> Browser {
        Browser::start_with(false).await
    }

    async fn start_with(javascript: bool) -> Browser {
        let chromium = binary("ARCHER_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("ARCHER_CHROMEDRIVER", "/usr/bin/chromedriver");
        let dir = tempfile::Builder::new().prefix("archer-browser-").tempdir().expect("a temporary directory");
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).expect("create the browser profile directory");
        let driver = Driver::start(&chromedriver, dir).await;

        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        let mut options = serde_json::json!({ "binary": chromium, "args": args });
        if !javascript {
            options["prefs"] = serde_json::json!({ "profile.managed_default_content_settings.javascript": 2 });
        }
        capabilities.insert("goog:chromeOptions".into(), options);
        // what the page logs (console errors, CSP violations), for `console_errors`
        capabilities.insert("goog:loggingPrefs".into(), serde_json::json!({ "browser": "ALL" }));
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let client = match tokio::time::timeout(Duration::from_secs(60), builder.connect(&driver.url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("starting {} through chromedriver failed: {e}\n{}", chromium.display(), driver.logs()),
            Err(_) => panic!("{} did not start within 60 s\n{}", chromium.display(), driver.logs()),
        };
        Browser { client, driver }
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!("opening {url} failed: {e}");
        }
    }

    /// The visible text of the first element matching the CSS selector `css` (waiting up to
    /// [`ELEMENT_WAIT`] for one).
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        match element.text().await {
            Ok(text) => text,
            Err(e) => panic!("reading the text of `{css}` on {} failed: {e}", self.current_url().await),
        }
    }

    /// The visible text of the whole page (its `<body>`).
    pub async fn page_text(&self) -> String {
        match self.try_page_text().await {
            Ok(text) => text,
            Err(e) => panic!("reading the page's text on {} failed: {e}", self.current_url().await),
        }
    }

    /// Types `value` into the input or textarea matching `css` (waiting for it), after clearing it.
    pub async fn fill(&self, css: &str, value: &str) {
        let element = self.find(css).await;
        if let Err(e) = element.clear().await {
            panic!("clearing `{css}` on {} failed: {e}", self.current_url().await);
        }
        if let Err(e) = element.send_keys(value).await {
            panic!("typing into `{css}` on {} failed: {e}", self.current_url().await);
        }
    }

    /// Clicks the element matching `css` (waiting for it). A click that submits a form or follows
    /// a link returns once the next page has loaded.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        if let Err(e) = element.click().await {
            panic!("clicking `{css}` on {} failed: {e}", self.current_url().await);
        }
    }

    /// Clicks the element matching `css` and waits until the browser has left the page and
    /// loaded the next one (a form post, a link): what the next step reads is the new page.
    pub async fn click_through(&self, css: &str) {
        let before = match self.client.find(Locator::Css("html")).await {
            Ok(e) => e,
            Err(e) => panic!("finding the page's root on {} failed: {e}", self.current_url().await),
        };
        self.click(css).await;
        let deadline = Instant::now() + ELEMENT_WAIT;
        // the old page's root goes stale once the next page replaced it
        while before.tag_name().await.is_ok() {
            if Instant::now() > deadline {
                panic!("clicking `{css}` did not leave {} within {ELEMENT_WAIT:?}", self.current_url().await);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        loop {
            match self.client.execute("return document.readyState", Vec::new()).await {
                Ok(state) if state == "complete" => break,
                Ok(_) => {}
                // JavaScript is off: WebDriver answers only once the page has loaded anyway
                Err(_) => break,
            }
            if Instant::now() > deadline {
                panic!(
                    "the page after clicking `{css}` did not load within {ELEMENT_WAIT:?}: {}",
                    self.current_url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The URL of the page the browser is on.
    pub async fn current_url(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => panic!("asking the browser for its URL failed: {e}"),
        }
    }

    /// Chooses the option with `value` in the select matching `css` (waiting for it).
    pub async fn select(&self, css: &str, value: &str) {
        let element = self.find(css).await;
        if let Err(e) = element.select_by_value(value).await {
            panic!("choosing {value:?} in `{css}` on {} failed: {e}", self.current_url().await);
        }
    }

    /// Runs `script` (a function body; `return` gives its value) in the page.
    pub async fn script(&self, script: &str) -> serde_json::Value {
        match self.client.execute(script, Vec::new()).await {
            Ok(v) => v,
            Err(e) => panic!("running a script on {} failed: {e}", self.current_url().await),
        }
    }

    /// Whether the first element matching `css` (waiting for one) is shown.
    pub async fn visible(&self, css: &str) -> bool {
        let element = self.find(css).await;
        match element.is_displayed().await {
            Ok(v) => v,
            Err(e) => panic!("asking whether `{css}` shows on {} failed: {e}", self.current_url().await),
        }
    }

    /// The value of attribute `name` of the first element matching `css` (waiting for one).
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let element = self.find(css).await;
        match element.attr(name).await {
            Ok(v) => v,
            Err(e) => panic!("reading `{name}` of `{css}` on {} failed: {e}", self.current_url().await),
        }
    }

    /// The errors the pages logged since the last call (console errors, failed loads, CSP
    /// violations), from chromedriver's browser log.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = match self.client.issue_cmd(BrowserLog).await {
            Ok(log) => log,
            Err(e) => panic!("reading the browser's log failed: {e}"),
        };
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Writes a screenshot of the whole page, `width` pixels wide, to `path` (PNG).
    pub async fn screenshot(&self, path: &Path, width: u32) {
        let resize = |h: u32| self.client.set_window_size(width, h);
        if let Err(e) = resize(900).await {
            panic!("resizing the window to {width} px failed: {e}");
        }
        let height = self.script("return document.documentElement.scrollHeight").await.as_u64().unwrap_or(900);
        let height = u32::try_from(height).unwrap_or(900).clamp(600, 6000);
        if let Err(e) = resize(height + 100).await {
            panic!("resizing the window to {width}×{height} failed: {e}");
        }
        let png = match self.client.screenshot().await {
            Ok(png) => png,
            Err(e) => panic!("taking a screenshot of {} failed: {e}", self.current_url().await),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let _ = resize(900).await;
    }

    /// The serious and critical accessibility violations axe-core finds on the page (axe-core
    /// from the npm registry, pinned in `web/package.json`, injected into the page).
    pub async fn axe(&self) -> Vec<serde_json::Value> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {} (`npm ci` in web/ brings it): {e}", path.display()));
        let script = format!(
            "{source}\nconst done = arguments[arguments.length - 1];\n\
             axe.run(document, {{resultTypes: ['violations']}}).then(r => done(r.violations), e => done([{{impact: 'critical', id: 'axe-failed', help: String(e)}}]));"
        );
        let found = match self.client.execute_async(&script, Vec::new()).await {
            Ok(v) => v,
            Err(e) => panic!("running axe-core on {} failed: {e}", self.current_url().await),
        };
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                serde_json::json!({
                    "id": v["id"], "impact": v["impact"], "help": v["help"],
                    "nodes": v["nodes"].as_array().into_iter().flatten().map(|n| n["html"].clone()).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    /// The WebDriver client, for what this harness does not wrap (screenshots, cookies, scripts).
    pub fn webdriver(&self) -> &Client {
        &self.client
    }

    /// The ids of every process this browser runs now: chromedriver, Chromium and their helpers
    /// (not the ended ones that wait to be reaped).
    pub fn processes(&self) -> Vec<u32> {
        self.driver.processes()
    }

    /// Ends the session (Chromium quits) and stops chromedriver, killing whatever is left of
    /// either. Dropping a `Browser` kills them too, only less politely.
    pub async fn close(self) {
        let Browser { client, mut driver } = self;
        // Errors do not matter here: whatever did not quit is killed next.
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        // Chromium takes a moment to end its helpers; killing it before would orphan them.
        let deadline = Instant::now() + Duration::from_secs(5);
        while driver.processes().len() > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver.stop().await;
    }

    async fn find(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(ELEMENT_WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => {
                let why = match e {
                    CmdError::WaitTimeout => String::new(),
                    e => format!(" ({e})"),
                };
                let text = self.try_page_text().await.unwrap_or_else(|e| format!("(its text cannot be read: {e})"));
                panic!(
                    "no element matches `{css}` after {ELEMENT_WAIT:?}{why} on {}; the page says:\n{}",
                    self.current_url().await,
                    clip(&text, 2000)
                )
            }
        }
    }

    async fn try_page_text(&self) -> Result<String, CmdError> {
        self.client.find(Locator::Css("body")).await?.text().await
    }
}

/// chromedriver's log of what the pages logged (`POST /session/{id}/se/log`).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// `$var`, or `default`, which must exist.
fn binary(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "{} is missing (set {var} to use another): run ./dev test, which installs chromium and chromedriver",
        path.display()
    );
    path
}

/// The chromedriver process and the directory holding the profile and the logs. Dropping it kills
/// chromedriver and every process of the browser's.
struct Driver {
    child: Child,
    url: String,
    /// Declared after `child`: removed once the processes are gone.
    dir: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it answers; tries another port if the
    /// one chosen was taken in the meantime.
    async fn start(chromedriver: &Path, dir: tempfile::TempDir) -> Driver {
        let http = {
            crate::crypto();
            reqwest::Client::builder()
        }
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
        let mut failures = String::new();
        for _ in 0..3 {
            let port = free_port().expect("a free port for chromedriver");
            let output = std::fs::File::create(dir.path().join("output.log")).expect("create the browser's log");
            let mut child = Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", dir.path().join("chromedriver.log").display()))
                // Chromium inherits these: its crash database and caches stay in `dir`, not in ~.
                .env("XDG_CONFIG_HOME", dir.path().join("config"))
                .env("XDG_CACHE_HOME", dir.path().join("cache"))
                .stdin(Stdio::null())
                .stdout(output.try_clone().expect("log file"))
                .stderr(output)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {} failed: {e}", chromedriver.display()));
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let _ = writeln!(failures, "chromedriver on port {port} exited ({status}):\n{}", logs(dir.path()));
                    break;
                }
                if let Ok(r) = http.get(format!("{url}/status")).send().await
                    && r.status().is_success()
                {
                    return Driver { child, url, dir };
                }
                if Instant::now() > deadline {
                    panic!("chromedriver on port {port} did not answer within 20 s\n{}", logs(dir.path()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("chromedriver did not start:\n{failures}")
    }

    fn logs(&self) -> String {
        logs(self.dir.path())
    }

    /// chromedriver and its descendants, and anything else started with our directory in its
    /// command line (Chromium's crash handlers leave the process tree); zombies left out.
    fn processes(&self) -> Vec<u32> {
        let table = process_table();
        let mut found: Vec<u32> = Vec::new();
        // `id()` is `None` once chromedriver has been reaped, when its id may belong to another.
        if let Some(root) = self.child.id() {
            let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
            for p in &table {
                children.entry(p.ppid).or_default().push(p.pid);
            }
            let mut todo = vec![root];
            while let Some(pid) = todo.pop() {
                found.push(pid);
                todo.extend(children.get(&pid).into_iter().flatten().copied());
            }
        }
        let marker = self.dir.path().as_os_str().as_encoded_bytes();
        for p in &table {
            if p.pid != std::process::id()
                && !found.contains(&p.pid)
                && p.cmdline.windows(marker.len()).any(|w| w == marker)
            {
                found.push(p.pid);
            }
        }
        found.retain(|pid| table.iter().any(|p| p.pid == *pid && !p.zombie));
        found
    }

    fn kill_all(&self) {
        for pid in self.processes() {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// Kills whatever is left and reaps chromedriver.
    async fn stop(&mut self) {
        self.kill_all();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The ends of chromedriver's log and of its (and Chromium's) output.
fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["chromedriver.log", "output.log"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let _ = writeln!(out, "--- the end of {name}:");
        for line in tail.into_iter().rev() {
            let _ = writeln!(out, "{}", clip(line, 500));
        }
    }
    out
}

fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

struct ProcessInfo {
    pid: u32,
    ppid: u32,
    zombie: bool,
    cmdline: Vec<u8>,
}

/// Every process on the machine (from /proc), skipping those that end while it is read.
fn process_table() -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut table = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some(mut fields) = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace()) else { continue };
        let zombie = fields.next() == Some("Z");
        let Some(ppid) = fields.next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        table.push(ProcessInfo { pid, ppid, zombie, cmdline });
    }
    table
}
