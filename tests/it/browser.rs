//! The gateway's page in a real browser: Debian's `chromium`, driven through `chromedriver`
//! (`.ci/run` installs both), headless.

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::gateway::{Gateway, Tagged, free_port, web};
use crate::harness::{TestEnv, block_on};

/// The port of the chromedriver this test run shares, started once. It ends with the test
/// process: a watcher ends its whole process group, the browsers it started too, once that
/// process is gone.
fn driver() -> u16 {
    static DRIVER: OnceLock<(u16, Mutex<Child>)> = OnceLock::new();
    let (port, _watcher) = DRIVER.get_or_init(|| {
        let port = free_port();
        let watcher = format!(
            "setsid chromedriver --port={port} >/dev/null 2>&1 & driver=$!; \
             while kill -0 {} 2>/dev/null; do sleep 1; done; kill -- -$driver",
            std::process::id()
        );
        let watcher = Command::new("sh")
            .args(["-c", &watcher])
            .stdin(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian's chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        (port, Mutex::new(watcher))
    });
    *port
}

#[test]
fn the_page_lists_a_running_environment_its_link_opens_the_app_and_pin_changes_its_row() {
    let env = TestEnv::new("gw-browser", &web("browsed", "0"));
    let id = format!("{}-x", env.name);
    env.envctl()
        .args(["up", &env.name, "--name", &id])
        .run()
        .success();
    let gateway = Gateway::start(&env, &[]);
    gateway.until_routed(&format!("{id}.localhost"));
    let profile = tempfile::tempdir().expect("a profile directory");
    let webdriver = format!("http://127.0.0.1:{}", driver());
    block_on(async {
        let options = serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .expect("a chromium session");
        let checked = std::panic::AssertUnwindSafe(page_checks(&browser, &id, gateway.port));
        let outcome = futures_util::FutureExt::catch_unwind(checked).await;
        // The browser ends with its session, whatever the checks said.
        let _ = browser.close().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
    let ls = env.envctl().args(["ls", "-o", "json"]).run();
    let rows = ls.success().json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .cloned();
    assert_eq!(row.unwrap()["pinned"], true);
}

async fn page_checks(browser: &fantoccini::Client, id: &str, port: u16) {
    {
        let list = format!("http://localhost:{port}/");
        browser.goto(&list).await.unwrap();
        let row = Locator::Css(&format!("tr[data-id='{id}']"));
        let text = browser
            .find(row)
            .await
            .expect("a row")
            .text()
            .await
            .unwrap();
        assert!(text.contains(id) && text.contains("ready"), "{text}");

        let link = format!("tr[data-id='{id}'] a.link");
        browser
            .find(Locator::Css(&link))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let app = browser
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(app.trim(), "browsed ok");
        let url = browser.current_url().await.unwrap();
        assert_eq!(url.host_str(), Some(format!("{id}.localhost").as_str()));

        // The id opens the environment's own page: its services and their last log lines.
        browser.goto(&list).await.unwrap();
        let own = format!("tr[data-id='{id}'] a[href='/env/{id}']");
        browser
            .find(Locator::Css(&own))
            .await
            .expect("the id links its page")
            .click()
            .await
            .unwrap();
        let service = browser
            .find(Locator::Css("tr[data-service='web']"))
            .await
            .expect("the service's row")
            .text()
            .await
            .unwrap();
        assert!(service.contains("running"), "{service}");
        assert!(service.contains("browsed: ready on port 8080"), "{service}");

        browser.goto(&list).await.unwrap();
        let pinned = format!("tr[data-id='{id}'] td.pinned");
        let before = browser
            .find(Locator::Css(&pinned))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(before, "no");
        let pin = format!("tr[data-id='{id}'] button[value='pin']");
        browser
            .find(Locator::Css(&pin))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The action answers with the list again, which says what it did.
        let note = browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("p.note"))
            .await
            .expect("the list after the action")
            .text()
            .await
            .unwrap();
        assert_eq!(note, format!("pinned {id}"));
        let after = browser
            .find(Locator::Css(&pinned))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(after, "yes");
        let unpin = format!("tr[data-id='{id}'] button[value='unpin']");
        assert!(
            browser.find(Locator::Css(&unpin)).await.is_ok(),
            "the button turned"
        );
    }
}

#[test]
fn the_create_form_creates_an_environment_the_browser_then_shows() {
    let tagged = Tagged::new("gw-browser-create");
    let gateway = Gateway::start(&tagged.env, &["--create"]);
    let profile = tempfile::tempdir().expect("a profile directory");
    let webdriver = format!("http://127.0.0.1:{}", driver());
    let (name, reference, port) = (
        tagged.env.name.clone(),
        tagged.tag[..9].to_string(),
        gateway.port,
    );
    block_on(async {
        let options = serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .expect("a chromium session");
        let checked =
            std::panic::AssertUnwindSafe(create_checks(&browser, &name, &reference, port));
        let outcome = futures_util::FutureExt::catch_unwind(checked).await;
        let _ = browser.close().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
    assert_eq!(tagged.environments().len(), 1);
}

async fn create_checks(browser: &fantoccini::Client, name: &str, reference: &str, port: u16) {
    browser
        .goto(&format!("http://localhost:{port}/"))
        .await
        .unwrap();
    browser
        .find(Locator::Css("a[href='/create']"))
        .await
        .expect("a link to the form")
        .click()
        .await
        .unwrap();
    let form = browser
        .form(Locator::Css("form[action='/create']"))
        .await
        .expect("the form");
    form.set_by_name("environment", name).await.unwrap();
    form.set_by_name("reference", reference).await.unwrap();
    form.set_by_name("ttl", "1h").await.unwrap();
    browser
        .find(Locator::Css("button[value='create']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The progress page reloads itself until the application answers in its place.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = browser.current_url().await.unwrap();
        let text = browser
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap_or_default();
        if text.trim() == "created ok" {
            assert_eq!(
                url.host_str(),
                Some(format!("{reference}.{name}.localhost").as_str())
            );
            return;
        }
        assert!(Instant::now() < deadline, "still at {url}: {text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
