//! Browser test helpers: headless Chromium driven over WebDriver (`fantoccini`) through a
//! `chromedriver` the test starts on a free port and kills when done.
//!
//! The driver is `BOXOFFICE_TEST_CHROMEDRIVER` (scripts/test.sh installs Debian's
//! `chromium` and `chromium-driver` and sets it); when that is set and does not work the
//! test fails. When it is unset, `chromedriver` on `PATH` is tried, and the test skips,
//! saying so, if there is none. `BOXOFFICE_TEST_CHROMIUM` optionally names the browser
//! binary (Debian's chromedriver finds `/usr/bin/chromium` itself).
//!
//! Every wait is bounded ([`WAIT`]); a failure says what was awaited, where, and what the
//! page showed.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::Engine;

/// The longest any single wait lasts.
pub const WAIT: Duration = Duration::from_secs(15);

/// How often waits poll.
const POLL: Duration = Duration::from_millis(100);

/// The browser's flags (SPEC §8 tests: headless Chromium, no sandbox as root, no GPU, and no
/// background traffic to Google).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
];

/// The chromedriver to use, or `None` (with the reason printed) to skip.
pub fn chromedriver() -> Option<PathBuf> {
    match std::env::var("BOXOFFICE_TEST_CHROMEDRIVER") {
        Ok(path) if !path.trim().is_empty() => {
            let path = PathBuf::from(path.trim());
            assert!(
                runs(&path),
                "BOXOFFICE_TEST_CHROMEDRIVER={} does not run (`--version` failed); scripts/test.sh installs \
                 Debian's chromium and chromium-driver and points it at /usr/bin/chromedriver",
                path.display()
            );
            Some(path)
        }
        _ => {
            let found = std::env::var_os("PATH")
                .map(|paths| {
                    std::env::split_paths(&paths)
                        .map(|dir| dir.join("chromedriver"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
                .into_iter()
                .find(|path| runs(path));
            if found.is_none() {
                eprintln!(
                    "skipped: no chromedriver (install Debian's chromium and chromium-driver, or set \
                     BOXOFFICE_TEST_CHROMEDRIVER; scripts/test.sh does both)"
                );
            }
            found
        }
    }
}

fn runs(path: &Path) -> bool {
    Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A port free on 127.0.0.1 right now (the driver binds it a moment later; a lost race
/// shows up as a driver that does not start, and is retried).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running chromedriver, in a process group of its own; the group (driver and the
/// browsers it started) is killed on drop, and the browser profile removed.
pub struct ChromeDriver {
    child: Child,
    pub url: String,
    /// The driver's log and the browser's profile.
    dir: tempfile::TempDir,
}

impl ChromeDriver {
    pub async fn start(program: &Path) -> Self {
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let log = dir.path().join("chromedriver.log");
            let child = {
                use std::os::unix::process::CommandExt;
                Command::new(program)
                    .arg(format!("--port={port}"))
                    .arg(format!("--log-path={}", log.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .unwrap_or_else(|err| panic!("starting {}: {err}", program.display()))
            };
            let mut driver = Self {
                child,
                url: format!("http://127.0.0.1:{port}"),
                dir,
            };
            match driver.wait_ready().await {
                Ok(()) => return driver,
                Err(err) => last_error = format!("{err}\n--- chromedriver.log ---\n{}", driver.log_tail()),
            }
        }
        panic!("chromedriver ({}) did not start: {last_error}", program.display());
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited with {status}"));
            }
            if let Ok(response) = client.get(format!("{}/status", self.url)).send().await
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready at {} after {WAIT:?}", self.url));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn profile_dir(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// The end of the driver's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        log.get(start..).unwrap_or(&log).to_owned()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The driver's process group: the driver and every browser process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session, and where its screenshots go.
pub struct Browser {
    pub client: Client,
    /// `target/page-screenshots/<engine>/`.
    pub screenshots: PathBuf,
    // Dropped last: kills the browser if the test did not close it.
    driver: ChromeDriver,
}

/// `target/page-screenshots/<engine>/` (absolute).
pub fn screenshot_dir(engine: Engine) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("page-screenshots").join(match engine {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

impl Browser {
    /// Starts chromedriver and a browser session; `None` (printed) when there is no driver
    /// and none was asked for.
    pub async fn start(engine: Engine) -> Option<Self> {
        let program = chromedriver()?;
        let driver = ChromeDriver::start(&program).await;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|flag| (*flag).to_owned()).collect();
        args.push(format!("--user-data-dir={}", driver.profile_dir().display()));
        let mut chrome_options = json!({ "args": args });
        if let Ok(binary) = std::env::var("BOXOFFICE_TEST_CHROMIUM")
            && !binary.trim().is_empty()
        {
            chrome_options["binary"] = json!(binary.trim());
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": chrome_options,
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64, "implicit": 0 },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match tokio::time::timeout(
            2 * WAIT,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&driver.url),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => panic!(
                "starting a Chromium session: {err}\n--- chromedriver.log ---\n{}",
                driver.log_tail()
            ),
            Err(_) => panic!(
                "starting a Chromium session: no answer in {:?}\n--- chromedriver.log ---\n{}",
                2 * WAIT,
                driver.log_tail()
            ),
        };
        let screenshots = screenshot_dir(engine);
        println!("page screenshots: {}", screenshots.display());
        Some(Self {
            client,
            screenshots,
            driver,
        })
    }

    /// Ends the session (the browser quits); the driver is killed on drop.
    pub async fn close(self) {
        let Self { client, driver, .. } = self;
        let _ = tokio::time::timeout(WAIT, client.close()).await;
        drop(driver);
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|err| panic!("opening {url}: {err}"));
    }

    pub async fn refresh(&self) {
        self.client.refresh().await.unwrap();
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// The current URL's path.
    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// What the page shows (for failure messages): URL, title and the start of its text.
    pub async fn describe(&self) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let title = self.client.title().await.unwrap_or_default();
        let text = self
            .client
            .execute("return document.body ? document.body.innerText : ''", vec![])
            .await
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let text: String = text.chars().take(800).collect();
        format!("page {url} (title {title:?}) shows:\n{text}")
    }

    /// Waits until `check` gives a value; fails after [`WAIT`] describing the page.
    pub async fn eventually<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                panic!("gave up after {WAIT:?} waiting for {what}; {}", self.describe().await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The elements matching `css` right now.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap_or_default()
    }

    /// The first element matching `css` right now.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        self.client.find(Locator::Css(css)).await.ok()
    }

    /// Waits for an element matching `css`.
    pub async fn find(&self, css: &str) -> Element {
        self.eventually(&format!("an element `{css}`"), async || self.try_find(css).await)
            .await
    }

    /// Waits for a *displayed* element matching `css`.
    pub async fn find_visible(&self, css: &str) -> Element {
        self.eventually(&format!("a visible element `{css}`"), async || {
            for element in self.all(css).await {
                if element.is_displayed().await.unwrap_or(false) {
                    return Some(element);
                }
            }
            None
        })
        .await
    }

    /// Whether a displayed element matches `css` right now.
    pub async fn is_visible(&self, css: &str) -> bool {
        for element in self.all(css).await {
            if element.is_displayed().await.unwrap_or(false) {
                return true;
            }
        }
        false
    }

    /// The trimmed text of the element matching `css` (waited for).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_default().trim().to_owned()
    }

    /// Waits until the text of `css` satisfies `accept` (re-finding it each time: pages that
    /// reload themselves replace their elements); returns that text.
    pub async fn wait_text(&self, css: &str, what: &str, accept: impl Fn(&str) -> bool) -> String {
        self.eventually(&format!("`{css}` to show {what}"), async || {
            let text = self.try_find(css).await?.text().await.ok()?;
            let text = text.trim().to_owned();
            accept(&text).then_some(text)
        })
        .await
    }

    pub async fn click(&self, css: &str) {
        let element = self.find_visible(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|err| panic!("clicking `{css}`: {err}"));
    }

    /// Replaces the value of the input `css` with `value`.
    pub async fn fill(&self, css: &str, value: &str) {
        let element = self.find_visible(css).await;
        element.clear().await.unwrap();
        element
            .send_keys(value)
            .await
            .unwrap_or_else(|err| panic!("typing into `{css}`: {err}"));
    }

    /// Waits until the current path satisfies `accept`; returns it.
    pub async fn wait_path(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        self.eventually(&format!("the browser to reach {what}"), async || {
            let path = self.client.current_url().await.ok()?.path().to_owned();
            accept(&path).then_some(path)
        })
        .await
    }

    /// Waits until the document (and its deferred scripts) finished loading.
    pub async fn wait_loaded(&self) {
        self.eventually("the page to finish loading", async || {
            let state = self.client.execute("return document.readyState", vec![]).await.ok()?;
            (state == "complete").then_some(())
        })
        .await;
    }

    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|err| panic!("running a script: {err}"))
    }

    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute_async(script, args)
            .await
            .unwrap_or_else(|err| panic!("running an async script: {err}"))
    }

    /// Runs a Chrome DevTools Protocol command through chromedriver's vendor endpoint
    /// (`POST /session/{id}/goog/cdp/execute`); returns its result.
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        let session = self.client.session_id().await.unwrap().expect("a WebDriver session");
        let response = reqwest::Client::new()
            .post(format!("{}/session/{session}/goog/cdp/execute", self.driver.url))
            .json(&json!({ "cmd": command, "params": params }))
            .timeout(WAIT)
            .send()
            .await
            .unwrap_or_else(|err| panic!("CDP {command}: {err}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "CDP {command}: {status} {body}");
        body["value"].clone()
    }

    /// Evaluates `expression` as the page's own script (CDP `Runtime.evaluate`).
    ///
    /// Unlike WebDriver's execute — which chromedriver runs through
    /// `Runtime.callFunctionOn`, so that Chromium treats an error thrown later by that code
    /// (a `setTimeout` callback) as cross-origin and reports only "Script error." to the
    /// page's `error` listeners — an error thrown by code evaluated here reaches them with
    /// its message, as one thrown by the page's own script would.
    pub async fn evaluate_as_page(&self, expression: &str) -> Value {
        let result = self
            .cdp(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "evaluating {expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Saves a screenshot of the viewport as `<name>.png` in [`Self::screenshots`].
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "the screenshot of {name} is not a PNG");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

/// Polls `check` until it gives a value (bounded by [`WAIT`]); for checks outside the
/// browser (the JSON API).
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() <= deadline, "gave up after {WAIT:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Parses a countdown `m:ss` (or `h:mm:ss`) into seconds.
pub fn parse_countdown(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() < 2 {
        return None;
    }
    for part in parts {
        total = total * 60 + part.trim().parse::<u64>().ok()?;
    }
    Some(total)
}

/// A page on another origin (another port of 127.0.0.1): the "attacker" of the CSRF test.
pub struct OtherOrigin {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl OtherOrigin {
    /// Serves `html` at `/` until dropped.
    pub async fn serve(html: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let html = html.clone();
                async move { axum::response::Html(html) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { base, task }
    }
}

impl Drop for OtherOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
