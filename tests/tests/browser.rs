//! The page (`GET /`) in a real browser, as a person meets it: headless Chromium driven over
//! WebDriver against a local cloud on moto, whose S3 answers CORS from the bucket's
//! configuration only (`MOTO_DISABLE_GLOBAL_CORS`), so the upload proves the stack's CORS.
//!
//! Screenshots of every state go to `target/browser/`. Needs Chromium and ChromeDriver
//! (`cargo xtask test` installs Debian's and names them in `E2E_CHROMIUM` and
//! `E2E_CHROMEDRIVER`); without them the test fails, it never skips.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::local_cloud::LocalCloud;
use e2e::{free_loopback_port, workspace_root};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long the page may take to show a result or an error.
const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

fn program(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} is not installed ({variable}); run the tests with `cargo xtask test`, which installs Debian's \
         chromium and chromium-driver",
        path.display()
    );
    path
}

/// ChromeDriver on a free loopback port, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
    /// The browser's profile, private to this session.
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    fn start() -> Self {
        let driver = program(xtask::browser::CHROMEDRIVER_ENV, xtask::browser::CHROMEDRIVER);
        let port = free_loopback_port();
        let log = screenshots_dir().join("chromedriver.log");
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let began = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(began.elapsed() < Duration::from_secs(20), "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url: format!("http://127.0.0.1:{port}"), profile: tempfile::tempdir().unwrap() }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test may never have closed its session: stop the browser's processes too,
        // found by the profile directory only this session's Chromium names.
        let flag = format!("--user-data-dir={}", self.profile.path().display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if cmdline.split(|byte| *byte == 0).any(|arg| arg == flag.as_bytes()) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

/// Chromium's console, through ChromeDriver's log endpoint (W3C WebDriver has none).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = workspace_root().join("target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

async fn connect(driver: &ChromeDriver) -> Client {
    let chromium = program(xtask::browser::CHROMIUM_ENV, xtask::browser::CHROMIUM);
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--window-size=1280,1000",
                format!("--user-data-dir={}", driver.profile.path().display()),
            ],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let Value::Object(capabilities) = capabilities else { unreachable!() };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Chooses `file` in the page's file input, as a person picking it does.
async fn choose(client: &Client, file: &Path) {
    let input = client.find(Locator::Css("#file")).await.unwrap();
    input.send_keys(file.to_str().unwrap()).await.unwrap();
}

/// Waits until `script` (a function body) returns something other than `null`.
async fn wait_for(client: &Client, what: &str, script: &str) -> Value {
    let began = Instant::now();
    loop {
        let value = client.execute(script, vec![]).await.unwrap();
        if !value.is_null() {
            return value;
        }
        if began.elapsed() > RESULT_TIMEOUT {
            let console = client.issue_cmd(BrowserLog).await.unwrap_or_default();
            panic!("the page never showed {what}: {}\nconsole: {console:#}", page_text(client).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn page_text(client: &Client) -> String {
    client.execute("return document.body.innerText", vec![]).await.unwrap().as_str().unwrap_or_default().to_owned()
}

/// Waits for the result of the latest photo: its summary once the result section shows.
async fn wait_for_result(client: &Client) -> String {
    let summary = wait_for(
        client,
        "a result",
        "const r = document.getElementById('result'); return r.hidden ? null : \
         document.getElementById('summary').textContent",
    )
    .await;
    summary.as_str().unwrap().to_owned()
}

async fn wait_for_error(client: &Client) -> String {
    let text = wait_for(
        client,
        "an error",
        "const e = document.getElementById('error'); return e.hidden ? null : e.innerText",
    )
    .await;
    text.as_str().unwrap().to_owned()
}

/// Hides the previous result, so that waiting sees the next one.
async fn reset(client: &Client) {
    client
        .execute(
            "document.getElementById('result').hidden = true; document.getElementById('error').hidden = true",
            vec![],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uploads_photos_in_chromium_and_sees_their_faces() {
    let cloud = LocalCloud::deployed("moto");
    let driver = ChromeDriver::start();
    let client = connect(&driver).await;
    let photos = workspace_root().join("tests/fixtures/photos");
    let page = format!("{}/", cloud.api);

    // The page: everything on first load, keyboard first, labelled.
    client.goto(&page).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "Image analyzer: faces and emotions");
    screenshot(&client, "1-page").await;
    let body = client.find(Locator::Css("body")).await.unwrap();
    body.send_keys("\u{E004}").await.unwrap(); // Tab
    let focused = client.execute("return document.activeElement.id", vec![]).await.unwrap();
    assert_eq!(focused, "file", "Tab reaches the photo chooser first");
    let labelled = client
        .execute(
            "return [...document.querySelectorAll('input')].every(i => i.labels.length > 0) \
             && document.getElementById('status').getAttribute('role') === 'status' \
             && document.getElementById('error').getAttribute('role') === 'alert'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(labelled, true, "every control is labelled for screen readers");

    // The astronaut: one box, where the API says, labelled HAPPY.
    choose(&client, &photos.join("astronaut.jpg")).await;
    let summary = wait_for_result(&client).await;
    assert_eq!(summary, "1 face found in astronaut.jpg.");
    screenshot(&client, "2-astronaut").await;
    let drawn = client
        .execute(
            "const photo = document.getElementById('photo').getBoundingClientRect(); \
             return [...document.querySelectorAll('#canvas .face')].map(box => { \
               const r = box.getBoundingClientRect(); \
               return {label: box.innerText, left: (r.left - photo.left) / photo.width, \
                       top: (r.top - photo.top) / photo.height, width: r.width / photo.width, \
                       height: r.height / photo.height}; })",
            vec![],
        )
        .await
        .unwrap();
    let boxes = drawn.as_array().unwrap();
    assert_eq!(boxes.len(), 1, "one face box: {drawn}");
    let label = boxes[0]["label"].as_str().unwrap();
    assert!(label.starts_with("#1 HAPPY "), "the box is labelled with its number and emotion: {label}");
    let file_key = client.find(Locator::Css("#result")).await.unwrap().attr("data-file-key").await.unwrap().unwrap();
    let id = file_key.strip_prefix("uploads/").unwrap();
    let analysis: Value = reqwest::get(format!("{}/analysis/{id}", cloud.api)).await.unwrap().json().await.unwrap();
    let position = &analysis["faces"][0]["position"];
    for (drawn, api) in [("left", "Left"), ("top", "Top"), ("width", "Width"), ("height", "Height")] {
        let (drawn, api) = (boxes[0][drawn].as_f64().unwrap(), position[api].as_f64().unwrap());
        assert!((drawn - api).abs() < 0.01, "the box's {api} is {drawn:.4} of the photo; the API says {api:.4}");
    }
    assert!(label.contains(&format!("{:.1}%", analysis["faces"][0]["emotions"][0]["confidence"].as_f64().unwrap())));
    let listed = client.find(Locator::Css("#faces li h3")).await.unwrap().text().await.unwrap();
    assert!(listed.starts_with("Face 1: Happy, "), "{listed}");
    let bars = client.find_all(Locator::Css("#faces .emotions li")).await.unwrap();
    assert_eq!(bars.len(), analysis["faces"][0]["emotions"].as_array().unwrap().len(), "every emotion as a bar");
    // The page asked for a URL signed for the file's exact length.
    let size = std::fs::metadata(photos.join("astronaut.jpg")).unwrap().len();
    let log = std::fs::read_to_string(cloud.state_dir().join("dataplane.log")).unwrap();
    assert!(log.contains(&format!("GET /upload-url?contentType=image%2Fjpeg&contentLength={size} ")), "{log}");

    // The cat: no faces, said plainly.
    reset(&client).await;
    choose(&client, &photos.join("chelsea.jpg")).await;
    assert_eq!(wait_for_result(&client).await, "No faces found in chelsea.jpg.");
    assert!(client.find_all(Locator::Css("#canvas .face")).await.unwrap().is_empty());
    screenshot(&client, "3-cat").await;

    // Text named .jpg: uploaded (the browser calls it a JPEG), refused by the analysis, and
    // the API's error shown in words with what to do.
    reset(&client).await;
    let scratch = tempfile::tempdir().unwrap();
    let fake = scratch.path().join("notes.jpg");
    std::fs::write(&fake, "this is not a photo\n").unwrap();
    choose(&client, &fake).await;
    let error = wait_for_error(&client).await;
    assert!(error.contains("Analysing the photo failed: "), "{error}");
    assert!(error.contains("Choose another photo."), "{error}");
    screenshot(&client, "4-not-a-photo").await;

    // A file that is not an image at all: refused before anything is uploaded.
    reset(&client).await;
    let text = scratch.path().join("notes.txt");
    std::fs::write(&text, "plain text\n").unwrap();
    choose(&client, &text).await;
    let error = wait_for_error(&client).await;
    assert!(error.contains("“notes.txt” is a text/plain file, not a photo this page can analyse."), "{error}");
    screenshot(&client, "5-not-an-image").await;

    // A JPEG over the limit: refused before anything is uploaded, naming the limit.
    reset(&client).await;
    let big = scratch.path().join("big.jpg");
    std::fs::write(&big, vec![0u8; 16 * 1024 * 1024]).unwrap();
    choose(&client, &big).await;
    let error = wait_for_error(&client).await;
    assert!(error.contains("“big.jpg” is 16 MB; the limit is 15 MB."), "{error}");

    // Nothing secret or internal reaches the person.
    let shown = page_text(&client).await;
    for secret in ["X-Amz", "http://", "https://", "Signature", "panicked"] {
        assert!(!shown.contains(secret), "the page shows `{secret}`: {shown}");
    }

    // A phone's width: the astronaut again, nothing cut off.
    client.set_window_size(375, 812).await.unwrap();
    reset(&client).await;
    choose(&client, &photos.join("astronaut.jpg")).await;
    assert_eq!(wait_for_result(&client).await, "1 face found in astronaut.jpg.");
    let width = client.execute("return window.innerWidth", vec![]).await.unwrap().as_f64().unwrap();
    assert!(width <= 375.0, "the viewport is a phone's: {width}");
    let overflow = client
        .execute(
            "const w = document.documentElement.clientWidth; \
             const cut = [...document.querySelectorAll('body *')].filter(e => { \
               if (e.closest('[hidden]') || e.matches('input[type=file], .visually-hidden')) return false; \
               const r = e.getBoundingClientRect(); return r.width > 0 && (r.left < -0.5 || r.right > w + 0.5); }) \
               .map(e => e.tagName + '#' + e.id + '.' + e.className); \
             return {scroll: document.documentElement.scrollWidth, width: w, cut: cut}",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow["cut"], json!([]), "elements cut off at 375 px: {overflow}");
    assert!(overflow["scroll"].as_f64() <= overflow["width"].as_f64(), "the page scrolls sideways: {overflow}");
    screenshot(&client, "6-phone").await;

    // No JavaScript error, no refused resource, no CSP violation in the console. (The one
    // network error is the analysis's 422 for the text file, which the page shows.)
    let log = client.issue_cmd(BrowserLog).await.unwrap();
    let errors: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .filter(|entry| !(entry["source"] == "network" && entry["message"].as_str().unwrap_or("").contains(" 422 ")))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // The bucket's CORS is what lets the page upload: with this origin taken out of it
    // behind the tool's back, the browser refuses the PUT and the page says so.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&e2e::sdk_config(&cloud.endpoint).await).force_path_style(true).build(),
    );
    let bucket = "image-analyzer-local-uploads-123456789012";
    let rule = aws_sdk_s3::types::CorsRule::builder()
        .allowed_origins("https://elsewhere.example")
        .allowed_methods("PUT")
        .allowed_headers("content-type")
        .build()
        .unwrap();
    let cors = aws_sdk_s3::types::CorsConfiguration::builder().cors_rules(rule).build().unwrap();
    s3.put_bucket_cors().bucket(bucket).cors_configuration(cors).send().await.unwrap();
    reset(&client).await;
    choose(&client, &photos.join("astronaut.jpg")).await;
    let error = wait_for_error(&client).await;
    assert!(error.contains("The upload could not reach storage."), "{error}");
    screenshot(&client, "7-upload-refused").await;

    client.close().await.unwrap();
    drop(cloud);
}
