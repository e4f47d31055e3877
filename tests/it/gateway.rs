//! `envctl gateway` against a real engine: routing by host name, WebSockets, activity for the
//! reaper, wake on request, the error-rate flag, unknown hosts and the token.

use std::process::Command;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;

use crate::harness::{IMAGE, TestEnv, block_on};
use crate::support::Running;

/// One service `web` answering `NAME ok` on 8080, published, with an HTTP probe: the entry.
pub fn web(name: &str, delay: &str) -> String {
    format!(
        "  web:\n    image: {IMAGE}\n    command: [serve, --name, {name}, --port, \"8080\", --delay, \"{delay}\"]\n    \
         ports: [8080]\n    ready: {{http: 8080/health}}\n"
    )
}

/// A running `envctl gateway`, stopped with SIGTERM when dropped.
pub struct Gateway {
    running: Option<Running>,
    pub port: u16,
}

impl Gateway {
    /// `envctl gateway` on a port of loopback the system picks (a port picked beforehand may
    /// be taken meanwhile, by a port Docker publishes for instance).
    pub fn start(env: &TestEnv, flags: &[&str]) -> Gateway {
        Gateway::listening(env, "127.0.0.1:0", flags)
    }

    /// `envctl gateway --listen LISTEN`, once it says on which port it listens and answers.
    pub fn listening(env: &TestEnv, listen: &str, flags: &[&str]) -> Gateway {
        Gateway::spawned(env.envctl(), listen, flags)
    }

    /// `envctl gateway --listen LISTEN` run by `envctl` (with its environment variables).
    pub fn spawned(envctl: crate::support::Envctl, listen: &str, flags: &[&str]) -> Gateway {
        let running = envctl
            .env("RUST_LOG", "envctl=debug")
            .args(["gateway", "--listen", listen])
            .args(flags)
            .spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let printed = running.stderr_so_far();
            if let Some(port) = listening_port(&printed) {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not say where it listens\n{printed}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let gateway = Gateway {
            running: Some(running),
            port,
        };
        gateway.until("the gateway answers", Gateway::answers);
        gateway
    }

    /// Whether the gateway accepts connections and serves its page.
    pub fn answers(&self) -> bool {
        let port = self.port;
        block_on(async move {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(_) => {
                    async_request(port, "GET", "localhost", "/", &[], vec![])
                        .await
                        .status
                        == 200
                }
                Err(_) => false,
            }
        })
    }

    pub fn get(&self, host: &str, path: &str) -> Reply {
        request(self.port, "GET", host, path, &[], Vec::new())
    }

    /// Polls `done` every 200 ms for at most 30 s.
    #[track_caller]
    pub fn until(&self, what: &str, done: impl Fn(&Gateway) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the gateway routes `host` to a running environment; a timeout shows the
    /// last answer and the gateway's page.
    #[track_caller]
    pub fn until_routed(&self, host: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = self.get(host, "/health");
            if reply.status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {host} is routed; it answers {} {}\n--- the page\n{}",
                reply.status,
                reply.body,
                self.get("localhost", "/").body
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Gateway {
    /// Kills the gateway outright (SIGKILL), as a crash or an OOM kill would.
    pub fn kill(mut self) {
        if let Some(running) = self.running.take() {
            running.signal("KILL");
            let _ = running.wait_within(Duration::from_secs(15));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.signal("TERM");
            let run = running.wait_within(Duration::from_secs(15));
            if std::thread::panicking() {
                eprintln!("--- the gateway's log\n{}", run.stderr());
                return;
            }
            assert!(
                run.output.status.success(),
                "the gateway did not stop cleanly\n{}",
                run.stderr()
            );
        }
    }
}

/// The row of environment `id` on the gateway's page, or `""`: other tests' environments are
/// on the page too.
pub fn row_of<'a>(page: &'a str, id: &str) -> &'a str {
    let Some(start) = page.find(&format!("<tr id=\"env-{id}\"")) else {
        return "";
    };
    let row = &page[start..];
    &row[..row.find("</tr>").unwrap_or(row.len())]
}

/// The port in the gateway's first line: `gateway: the list at http://DOMAIN:PORT/, ...`.
fn listening_port(printed: &str) -> Option<u16> {
    let line = printed
        .lines()
        .find(|l| l.starts_with("gateway: the list at "))?;
    let url = line.split_whitespace().nth(4)?;
    url.trim_end_matches(',')
        .trim_end_matches('/')
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// One HTTP/1.1 request to the gateway on 127.0.0.1 with the given `Host`.
pub fn request(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    block_on(async_request(port, method, host, path, headers, body))
}

pub async fn async_request(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the gateway");
    request_on(stream, method, host, path, headers, body).await
}

/// One HTTP/1.1 request to the gateway on 127.0.0.1 from the loopback address `from`, as
/// another client would.
pub fn request_from(
    from: [u8; 4],
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind((from, 0).into())
            .expect("bind the client's address");
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect to the gateway");
        request_on(stream, method, "localhost", path, headers, body).await
    })
}

async fn request_on(
    stream: tokio::net::TcpStream,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(http_body_util::Full::new(Bytes::from(body)))
        .expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn up(env: &TestEnv, words: &[&str]) {
    env.envctl().args(["up"]).args(words).run().success();
}

pub fn post_form(gateway: &Gateway, path: &str, form: &str, cookie: Option<&str>) -> Reply {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(cookie) = cookie {
        headers.push(("cookie", cookie));
    }
    request(
        gateway.port,
        "POST",
        "localhost",
        path,
        &headers,
        form.as_bytes().to_vec(),
    )
}

#[test]
fn two_environments_at_once_by_id_and_by_ref_and_unknown_hosts_get_the_404_page() {
    let one = TestEnv::new("gw-route-a", &web("first", "0"));
    // The second declares its entry, and has another HTTP service that would be ambiguous.
    let other = format!(
        "{}  admin:\n    image: {IMAGE}\n    command: [serve, --name, admin, --port, \"9090\"]\n    \
         ports: [9090]\n    ready: {{http: 9090/health}}\n",
        web("second", "0")
    );
    let two = TestEnv::new("gw-route-b", &other);
    std::fs::write(
        two.file(),
        std::fs::read_to_string(two.file()).unwrap() + "gateway: web:8080\n",
    )
    .unwrap();
    let tag = format!("gw{:010x}", std::process::id());
    let tagged = format!("{IMAGE}:{tag}");
    let status = Command::new("docker")
        .args(["tag", IMAGE, &tagged])
        .status()
        .unwrap();
    assert!(status.success());
    struct Untag(String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", &self.0]).output();
        }
    }
    let _untag = Untag(tagged);
    let id_one = format!("{}-x", one.name);
    up(&one, &[&one.name, "--name", &id_one]);
    up(&two, &[&two.name, &format!("web@{}", &tag[..9])]);
    let gateway = Gateway::start(&one, &[]);

    let by_id = format!("{id_one}.localhost:{}", gateway.port);
    gateway.until_routed(&by_id);
    let by_ref = format!("{}.{}.localhost", &tag[..7], two.name);
    gateway.until_routed(&by_ref);
    for _ in 0..3 {
        assert_eq!(gateway.get(&by_id, "/").body, "first ok\n");
        assert_eq!(gateway.get(&by_ref, "/").body, "second ok\n");
    }

    let page = gateway.get("localhost", "/");
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(&format!("http://{id_one}.localhost:{}/", gateway.port))
    );
    assert!(page.body.contains("web 8080"), "the entry is named");

    for host in [
        "example.com",
        "nope.localhost",
        &format!("x.{}.localhost", two.name),
    ] {
        let unknown = gateway.get(host, "/");
        assert_eq!(unknown.status, 404, "{host}");
        assert!(
            unknown.body.contains("No environment at"),
            "{}",
            unknown.body
        );
        assert!(unknown.body.contains(&id_one), "it lists what it knows");
    }
    // An absolute URI naming another host is no way through: the host decides, and is unknown.
    let absolute = request(
        gateway.port,
        "GET",
        "example.com",
        "http://127.0.0.1:1/",
        &[],
        vec![],
    );
    assert_eq!(absolute.status, 404);
}

#[test]
fn a_websocket_passes_through_the_gateway() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let env = TestEnv::new("gw-ws", &web("ws", "0"));
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    let gateway = Gateway::start(&env, &[]);
    let host = format!("{id}.localhost:{}", gateway.port);
    gateway.until_routed(&host);
    block_on(async {
        let mut request = format!("ws://127.0.0.1:{}/ws", gateway.port)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert("host", host.parse().unwrap());
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", gateway.port))
            .await
            .unwrap();
        let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("the upgrade goes through");
        assert_eq!(response.status(), 101);
        for text in ["hello", "through the gateway"] {
            socket.send(Message::text(text)).await.unwrap();
            let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("an echo in time")
                .expect("a message")
                .expect("no error");
            assert_eq!(echoed, Message::text(text));
        }
        socket.close(None).await.unwrap();
    });
}

#[test]
fn requests_through_the_gateway_are_activity_that_keeps_an_environment_from_reap_idle() {
    let env = TestEnv::new("gw-active", &web("active", "0"));
    let (used, unused) = (format!("{}-used", env.name), format!("{}-unused", env.name));
    up(&env, &[&env.name, "--name", &used]);
    up(&env, &[&env.name, "--name", &unused]);
    let gateway = Gateway::start(&env, &[]);
    let host = format!("{used}.localhost");
    gateway.until_routed(&host);
    // The start's network chatter dies down (as `settle` in reaper.rs): no event tells when.
    std::thread::sleep(Duration::from_secs(4));
    env.reap(&["--idle", "1h"]).success();
    // Most of the 6 s idle threshold: time passing is what is under test.
    std::thread::sleep(Duration::from_secs(5));
    for _ in 0..5 {
        assert_eq!(gateway.get(&host, "/").status, 200);
        std::thread::sleep(Duration::from_millis(200));
    }
    // The gateway writes its activity within a few seconds, and `ls` reads it.
    let last_activity = || {
        let ls = env.envctl().args(["ls", "-o", "json"]).run();
        let rows = ls.success().json();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == used.as_str())
            .map(|r| r["last_activity"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    gateway.until("the activity is recorded", |_| {
        last_activity() == "a request through `envctl gateway`"
    });
    let reap = env.reap(&["--idle", "6s"]);
    reap.success();
    let printed = reap.stdout();
    let stopped: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("stopped"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(stopped.contains(&unused.as_str()), "{}", reap.stdout());
    assert!(!stopped.contains(&used.as_str()), "{}", reap.stdout());
    assert_eq!(env.state_of(&used).as_deref(), Some("ready"));
}

#[test]
fn a_stopped_environment_is_woken_by_a_request_answered_once_ready() {
    let env = TestEnv::new("gw-wake", &web("woken", "2s"));
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    let gateway = Gateway::start(&env, &[]);
    let host = format!("{id}.localhost");
    gateway.until_routed(&host);
    env.envctl().args(["stop", &id]).run().success();
    gateway.until("the gateway sees it stopped", |g| {
        row_of(&g.get("localhost", "/").body, &id).contains(">stopped")
    });
    // A browser gets the waiting page, which reloads itself, and the start begins.
    let page = request(
        gateway.port,
        "GET",
        &host,
        "/",
        &[("accept", "text/html")],
        vec![],
    );
    assert_eq!(page.status, 503);
    assert!(
        page.body.contains("http-equiv=\"refresh\""),
        "{}",
        page.body
    );
    assert!(page.headers.contains_key("retry-after"));
    // Any other request is held until the environment is ready, then answered by it.
    let began = Instant::now();
    let answer = gateway.get(&host, "/");
    assert_eq!((answer.status, answer.body.as_str()), (200, "woken ok\n"));
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));
    assert!(began.elapsed() < Duration::from_secs(60));
    let metrics = gateway.get("localhost", "/metrics").body;
    let wakes = format!(
        "envctl_gateway_wakes_total{{id=\"{id}\",environment=\"{}\"}} 1",
        env.name
    );
    assert!(metrics.lines().any(|l| l == wakes), "{metrics}");
}

#[test]
fn concurrent_requests_during_one_wake_start_it_once() {
    let env = TestEnv::new("gw-once", &web("once", "2s"));
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    let gateway = Gateway::start(&env, &[]);
    let host = format!("{id}.localhost");
    gateway.until_routed(&host);
    env.envctl().args(["stop", &id]).run().success();
    gateway.until("the gateway sees it stopped", |g| {
        row_of(&g.get("localhost", "/").body, &id).contains(">stopped")
    });
    let port = gateway.port;
    let answers = block_on(async {
        let asking = (0..8).map(|_| async_request(port, "GET", &host, "/", &[], vec![]));
        futures_util::future::join_all(asking).await
    });
    for answer in &answers {
        assert_eq!((answer.status, answer.body.as_str()), (200, "once ok\n"));
    }
    let metrics = gateway.get("localhost", "/metrics").body;
    let wakes = format!(
        "envctl_gateway_wakes_total{{id=\"{id}\",environment=\"{}\"}} 1",
        env.name
    );
    assert!(
        metrics.lines().any(|l| l == wakes),
        "one start for 8 requests:\n{metrics}"
    );
    let docker = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Running}}",
            &format!("web_{id}"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&docker.stdout).trim(), "0 true");
}

#[test]
fn an_erroring_environment_is_flagged_stopped_by_reap_stop_erroring_and_not_woken() {
    // `/` forwards to a port nobody listens on: 502 for every request, while /health is fine.
    let services = format!(
        "  web:\n    image: {IMAGE}\n    command: [serve, --name, broken, --port, \"8080\", --forward, \"127.0.0.1:1\"]\n    \
         ports: [8080]\n    ready: {{http: 8080/health}}\n"
    );
    let env = TestEnv::new("gw-errors", &services);
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    let gateway = Gateway::start(&env, &["--max-error-rate", "50%", "--over", "5m"]);
    let host = format!("{id}.localhost");
    gateway.until_routed(&host);
    for _ in 0..12 {
        assert_eq!(gateway.get(&host, "/").status, 502);
    }
    let page = gateway.get("localhost", "/").body;
    assert!(page.contains("error rate:"), "{page}");
    assert!(page.contains("answered 5xx over 5m, above 50%"), "{page}");
    // The flag reaches the reaper's state at the next flush.
    let mut reap = env.reap(&["--idle", "1h", "--stop-erroring"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !reap.stdout().contains("stopped") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        reap = env.reap(&["--idle", "1h", "--stop-erroring"]);
    }
    reap.success();
    assert!(
        reap.stdout()
            .contains("its error rate at `envctl gateway`: "),
        "{}",
        reap.stdout()
    );
    assert_eq!(env.state_of(&id).as_deref(), Some("stopped"));
    // `status` says why, as for every stop the reaper makes.
    env.envctl()
        .args(["status", &id])
        .run()
        .success()
        .stderr_has("UTC by the reaper (--stop-erroring): its error rate at `envctl gateway`: ")
        .stderr_has("requests through `envctl gateway` do not wake it, `envctl start` does");
    gateway.until("the gateway sees it stopped", |g| {
        row_of(&g.get("localhost", "/").body, &id).contains("stopped for its error rate")
    });
    let refused = gateway.get(&host, "/");
    assert_eq!(refused.status, 503);
    assert!(refused.body.contains("error rate"), "{}", refused.body);
    // A wake would have begun by now: the absence of an event takes time to see.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        env.state_of(&id).as_deref(),
        Some("stopped"),
        "requests do not wake it"
    );
}

#[test]
fn off_loopback_the_actions_need_the_token_kept_in_a_strict_cookie() {
    let env = TestEnv::new("gw-token", &web("token", "0"));
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    let refused = env
        .envctl()
        .args(["gateway", "--listen", &format!("0.0.0.0:{}", free_port())])
        .run_within(Duration::from_secs(20));
    refused
        .code(1)
        .stderr_has("needs a token")
        .stderr_has("--token-file");

    let token_file = env.dir.file("token");
    std::fs::write(&token_file, "correct-horse-battery\n").unwrap();
    let gateway = Gateway::listening(
        &env,
        "0.0.0.0:0",
        &["--token-file", token_file.to_str().unwrap()],
    );
    gateway.until("it lists the environment", |g| {
        g.get("localhost", "/").body.contains(&id)
    });
    let page = gateway.get("localhost", "/").body;
    assert!(page.contains("href=\"/login\""), "{page}");
    assert!(!page.contains("/act/"), "no actions without the token");

    let login = gateway.get("localhost", "/login").body;
    let at = login.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = login[at..at + 32].to_string();
    let pin = format!("/act/pin/{id}");
    let without = post_form(&gateway, &pin, &format!("csrf={csrf}"), None);
    assert_eq!(without.status, 403);
    let wrong = post_form(
        &gateway,
        "/login",
        &format!("csrf={csrf}&token=guess"),
        None,
    );
    assert_eq!(wrong.status, 403);
    let signed = post_form(
        &gateway,
        "/login",
        &format!("csrf={csrf}&token=correct-horse-battery"),
        None,
    );
    assert_eq!(signed.status, 303);
    let cookie = signed.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let forged = post_form(&gateway, &pin, "csrf=0000", Some(&pair));
    assert_eq!(forged.status, 403, "the form secret is checked too");
    let pinned = post_form(&gateway, &pin, &format!("csrf={csrf}"), Some(&pair));
    assert_eq!(pinned.status, 303, "{}", pinned.body);
    let ls = env.envctl().args(["ls", "-o", "json"]).run();
    let rows = ls.success().json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["pinned"], true);
}

/// Sends `raw` as it is on a connection of its own and reads the answer until the gateway
/// closes it (the request says `Connection: close`): its status and its whole text.
fn exchange(port: u16, raw: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(raw).expect("send");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    // The gateway may answer and close before it read the whole request: keep what came.
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        answer.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The value of the `/metrics` line that starts with `series` (name and labels), if any.
fn metric(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The `csrf` value of the sign-in form.
pub fn csrf_of(gateway: &Gateway) -> String {
    let login = gateway.get("localhost", "/login").body;
    let at = login.find("name=\"csrf\" value=\"").unwrap() + 19;
    login[at..at + 32].to_string()
}

#[test]
fn options_star_and_a_chunked_body_over_max_body_are_the_gateways_answers_and_count_nowhere() {
    let env = TestEnv::new("gw-own", &web("own", "0"));
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    let gateway = Gateway::start(
        &env,
        &[
            "--max-error-rate",
            "50%",
            "--over",
            "5m",
            "--max-body",
            "1024",
        ],
    );
    let host = format!("{id}.localhost:{}", gateway.port);
    gateway.until_routed(&host);

    // `OPTIONS *` asks the server, not a resource: the gateway answers it itself.
    let options = format!("OPTIONS * HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    for _ in 0..12 {
        let (status, answer) = exchange(gateway.port, options.as_bytes());
        assert_eq!(status, 200, "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("\r\nallow: "),
            "{answer}"
        );
    }
    // A chunked body over `--max-body` is the client's: 413, as with `Content-Length`.
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         1000\r\n{}\r\n0\r\n\r\n",
        "a".repeat(0x1000)
    );
    for _ in 0..12 {
        let (status, answer) = exchange(gateway.port, chunked.as_bytes());
        assert_eq!(status, 413, "{answer}");
    }
    let declared = request(gateway.port, "POST", &host, "/", &[], vec![b'a'; 2048]);
    assert_eq!(declared.status, 413);
    // A target that names no resource is the client's mistake too.
    let star = format!("GET * HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (status, answer) = exchange(gateway.port, star.as_bytes());
    assert_eq!(status, 400, "{answer}");

    let page = gateway.get("localhost", "/").body;
    assert!(!row_of(&page, &id).contains("error rate"), "{page}");
    let metrics = gateway.get("localhost", "/metrics").body;
    let labels = format!("{{id=\"{id}\",environment=\"{}\"}}", env.name);
    assert_eq!(
        metric(
            &metrics,
            &format!("envctl_gateway_responses_5xx_total{labels}")
        ),
        Some(0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "envctl_gateway_rejected_total{reason=\"body_too_large\"}"
        ),
        Some(13),
        "{metrics}"
    );
    assert_eq!(gateway.get(&host, "/").body, "own ok\n");
}

#[test]
fn an_absolute_form_request_without_host_reaches_the_environment_with_its_authority() {
    // busybox's httpd runs a CGI script that prints its environment, `HTTP_HOST` among it.
    let setup = "/bin/busybox mkdir -p /www/cgi-bin; /bin/busybox printf '#!/bin/busybox \
                 sh\\\\necho Content-Type: text/plain\\\\necho\\\\n/bin/busybox env\\\\n' > \
                 /www/cgi-bin/env; /bin/busybox chmod +x /www/cgi-bin/env; /bin/busybox httpd -p \
                 8080 -h /www;";
    let services = crate::compose_keys::busybox_service("echo", setup, "    ports: [8080]\n");
    let env = TestEnv::new("gw-absolute", &services);
    std::fs::write(
        env.file(),
        std::fs::read_to_string(env.file()).unwrap() + "gateway: echo:8080\n",
    )
    .unwrap();
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    let gateway = Gateway::start(&env, &[]);
    let authority = format!("{id}.localhost:{}", gateway.port);
    gateway.until("the gateway routes it", |g| {
        g.get(&authority, "/cgi-bin/env").status == 200
    });
    let with_host = gateway.get(&authority, "/cgi-bin/env").body;
    assert!(
        with_host.contains(&format!("HTTP_HOST={authority}\n")),
        "{with_host}"
    );
    let absolute =
        format!("GET http://{authority}/cgi-bin/env HTTP/1.1\r\nConnection: close\r\n\r\n");
    let (status, answer) = exchange(gateway.port, absolute.as_bytes());
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains(&format!("HTTP_HOST={authority}\n")),
        "{answer}"
    );
}

#[test]
fn wrong_tokens_are_throttled() {
    let env = TestEnv::new("gw-throttle", "");
    let token_file = env.dir.file("token");
    std::fs::write(&token_file, "correct-horse-battery\n").unwrap();
    let gateway = Gateway::start(&env, &["--token-file", token_file.to_str().unwrap()]);
    let csrf = csrf_of(&gateway);
    let form = |token: &str| format!("csrf={csrf}&token={token}").into_bytes();
    let login = |from: [u8; 4], token: &str| {
        request_from(
            from,
            gateway.port,
            "POST",
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            form(token),
        )
    };
    let guesses: Vec<Reply> = (0..10).map(|_| login([127, 0, 0, 1], "guess")).collect();
    let statuses: Vec<u16> = guesses.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], [403, 403, 403], "a few mistakes are free");
    assert!(
        statuses[3..].iter().all(|s| *s == 429),
        "then guesses wait: {statuses:?}"
    );
    let throttled = &guesses[9];
    let wait: u64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(
        throttled.body.contains("too many wrong tokens"),
        "{}",
        throttled.body
    );
    // Another client is not locked out by the guesser.
    assert_eq!(login([127, 0, 0, 2], "correct-horse-battery").status, 303);
    // The guesser itself may try again once the wait is over.
    assert_eq!(login([127, 0, 0, 1], "correct-horse-battery").status, 429);
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(login([127, 0, 0, 1], "correct-horse-battery").status, 303);
    let metrics = gateway.get("localhost", "/metrics").body;
    assert_eq!(
        metric(
            &metrics,
            "envctl_gateway_rejected_total{reason=\"login_throttled\"}"
        ),
        Some(8),
        "{metrics}"
    );
}

#[test]
fn the_session_cookie_never_holds_the_token() {
    let env = TestEnv::new("gw-session", "");
    let token_file = env.dir.file("token");
    std::fs::write(&token_file, "correct-horse-battery\n").unwrap();
    let gateway = Gateway::start(&env, &["--token-file", token_file.to_str().unwrap()]);
    let csrf = csrf_of(&gateway);
    let signed = post_form(
        &gateway,
        "/login",
        &format!("csrf={csrf}&token=correct-horse-battery"),
        None,
    );
    assert_eq!(signed.status, 303);
    let cookie = signed.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(!cookie.contains("correct-horse-battery"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let page_with = |cookie: &str| {
        request(
            gateway.port,
            "GET",
            "localhost",
            "/",
            &[("cookie", cookie)],
            vec![],
        )
        .body
    };
    let signs_in = |page: String| page.contains("href=\"/login\"");
    assert!(!signs_in(page_with(&pair)), "the session is signed in");
    assert!(
        signs_in(page_with("envctl_gateway=correct-horse-battery")),
        "the token itself is no session"
    );
    let (name, value) = pair.split_once('=').unwrap();
    // Another last digit: one in sixteen signatures already ends in `0`.
    let other = if value.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{name}={}{other}", &value[..value.len() - 1]);
    assert!(signs_in(page_with(&tampered)), "{tampered}");
}

#[test]
fn an_oversized_token_file_is_refused() {
    let env = TestEnv::new("gw-token-size", "");
    let big = env.dir.file("big-token");
    std::fs::write(&big, "a".repeat(5 * 1024 * 1024)).unwrap();
    for path in [big.to_str().unwrap(), "/dev/zero"] {
        env.envctl()
            .args(["gateway", "--listen", "127.0.0.1:0", "--token-file", path])
            .run_within(Duration::from_secs(20))
            .code(1)
            .stderr_has(&format!("the token file `{path}` is larger than 4 MiB"));
    }
}

#[test]
fn the_first_line_names_the_environments_url_with_its_placeholder_as_it_is() {
    let env = TestEnv::new("gw-first-line", "");
    let gateway = Gateway::start(&env, &[]);
    let printed = gateway.running.as_ref().unwrap().stderr_so_far();
    let first = printed
        .lines()
        .find(|l| l.starts_with("gateway: "))
        .unwrap_or_default();
    let port = gateway.port;
    assert!(
        first.starts_with(&format!(
            "gateway: the list at http://localhost:{port}/, environments at \
             http://ID.localhost:{port}/ (state in "
        )),
        "{first}"
    );
}

#[test]
fn reap_pause_after_pauses_an_idle_environment_and_a_request_resumes_it() {
    let env = TestEnv::new("gw-pause", &web("paused", "0"));
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    let gateway = Gateway::start(&env, &[]);
    let host = format!("{id}.localhost");
    gateway.until_routed(&host);
    // The start's network chatter dies down (as `settle` in reaper.rs): no event tells when.
    std::thread::sleep(Duration::from_secs(4));
    env.reap(&["--idle", "1h"]).success();
    std::thread::sleep(Duration::from_secs(3));
    let reap = env.reap(&["--pause-after", "2s", "--idle", "1h"]);
    reap.success();
    assert!(
        reap.stdout()
            .lines()
            .any(|l| l.starts_with(&format!("paused {id} "))),
        "{}",
        reap.stdout()
    );
    assert_eq!(env.state_of(&id).as_deref(), Some("paused"));
    let status = env.envctl().args(["status", &id]).run();
    assert!(
        status.success().stdout().contains("paused"),
        "{}",
        status.stdout()
    );
    let docker = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Status}}", &format!("web_{id}")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&docker.stdout).trim(), "paused");
    gateway.until("the gateway sees it paused", |g| {
        row_of(&g.get("localhost", "/").body, &id).contains(">paused")
    });
    // A browser's request too is answered by the environment: a resume takes milliseconds.
    let answer = request(
        gateway.port,
        "GET",
        &host,
        "/",
        &[("accept", "text/html")],
        vec![],
    );
    assert_eq!((answer.status, answer.body.as_str()), (200, "paused ok\n"));
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));
}

#[test]
fn touch_and_start_resume_a_paused_environment() {
    let env = TestEnv::new("gw-resume", &web("resumed", "0"));
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    // A first pass samples the counters (a resumed environment has none yet), the next one
    // finds it idle for `--pause-after`.
    let pause = || {
        env.reap(&["--idle", "1h"]).success();
        std::thread::sleep(Duration::from_secs(2));
        let reap = env.reap(&["--pause-after", "1s", "--idle", "1h"]);
        reap.success();
        assert_eq!(
            env.state_of(&id).as_deref(),
            Some("paused"),
            "{}",
            reap.stdout()
        );
    };
    std::thread::sleep(Duration::from_secs(4));
    pause();
    let touch = env.envctl().args(["touch", &id]).run();
    assert!(
        touch.success().stderr().contains("resumed"),
        "{}",
        touch.stderr()
    );
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));
    pause();
    env.envctl().args(["start", &id]).run().success();
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));
}

#[test]
fn an_open_websocket_keeps_an_environment_from_reap_idle() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let env = TestEnv::new("gw-open-ws", &web("open", "0"));
    let (used, unused) = (format!("{}-used", env.name), format!("{}-unused", env.name));
    up(&env, &[&env.name, "--name", &used]);
    up(&env, &[&env.name, "--name", &unused]);
    let gateway = Gateway::start(&env, &[]);
    let host = format!("{used}.localhost:{}", gateway.port);
    gateway.until_routed(&host);
    let port = gateway.port;
    let socket = block_on(async move {
        let mut request = format!("ws://127.0.0.1:{port}/ws")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert("host", host.parse().unwrap());
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (socket, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("the upgrade goes through");
        assert_eq!(response.status(), 101);
        socket
    });
    // The chatter of the start and the handshake's bytes die down (as `settle` in reaper.rs),
    // and a first pass samples the counters after them.
    std::thread::sleep(Duration::from_secs(4));
    env.reap(&["--idle", "1h"]).success();
    // Open and silent for longer than the idle threshold: no request, no traffic.
    std::thread::sleep(Duration::from_secs(9));
    let reap = env.reap(&["--idle", "6s"]);
    reap.success();
    let stopped: Vec<String> = reap
        .stdout()
        .lines()
        .filter(|l| l.starts_with("stopped"))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect();
    assert!(stopped.contains(&unused), "{}", reap.stdout());
    assert!(!stopped.contains(&used), "{}", reap.stdout());
    assert_eq!(env.state_of(&used).as_deref(), Some("ready"));
    drop(socket);
}

/// An environment file whose one service `web` runs `REPOSITORY:base` (no such tag), and a
/// tag of the demo image under that repository, removed when dropped.
pub struct Tagged {
    pub env: TestEnv,
    repository: String,
    pub tag: String,
}

impl Tagged {
    pub fn new(test: &str) -> Tagged {
        Tagged::running(
            test,
            "[serve, --name, created, --port, \"8080\", --delay, \"1s\"]",
        )
    }

    /// `web` runs `command`.
    fn running(test: &str, command: &str) -> Tagged {
        Tagged::made(test, |repository| {
            format!(
                "services:\n  web:\n    image: {repository}:base\n    command: {command}\n    \
                 ports: [8080]\n    ready: {{http: 8080/health}}\n"
            )
        })
    }

    /// A warm pool of one `db`, which `web` (on the tagged repository) requires.
    pub fn pooled(test: &str) -> Tagged {
        Tagged::made(test, |repository| {
            format!(
                "pool: {{size: 1, services: [db]}}\nservices:\n  db:\n    image: {IMAGE}\n    \
                 command: [serve, --name, db, --port, \"1521\"]\n    ready: {{tcp: 1521}}\n  \
                 web:\n    image: {repository}:base\n    command: [serve, --name, created, --port, \
                 \"8080\", --requires, \"database:1521\"]\n    links: [\"db:database\"]\n    \
                 ports: [8080]\n    ready: {{http: 8080/health}}\n"
            )
        })
    }

    /// The file is `name: NAME` and what `rest` makes of the tagged repository.
    fn made(test: &str, rest: impl Fn(&str) -> String) -> Tagged {
        let probe = TestEnv::new(test, &web("probe", "0"));
        let repository = format!("{}/web", probe.name);
        let name = probe.name.clone();
        drop(probe);
        let text = format!("name: {name}\n{}", rest(&repository));
        let env = TestEnv {
            name: name.clone(),
            dir: crate::support::EnvDir::new().with(&format!("{name}.yaml"), &text),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let tag = format!("{:012x}", nanos & 0xffff_ffff_ffff);
        let tagged = Command::new("docker")
            .args(["tag", IMAGE, &format!("{repository}:{tag}")])
            .status()
            .unwrap();
        assert!(tagged.success());
        Tagged {
            env,
            repository,
            tag,
        }
    }

    /// Every environment of the file, as `ls -o json` shows them.
    pub fn environments(&self) -> Vec<serde_json::Value> {
        let ls = self.env.envctl().args(["ls", "-o", "json"]).run();
        let rows = ls.success().json();
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["environment"] == self.env.name.as_str())
            .cloned()
            .collect()
    }
}

impl Drop for Tagged {
    fn drop(&mut self) {
        let _ = self
            .env
            .envctl()
            .args(["down", "--all", "--environment", &self.env.name])
            .run();
        let _ = self
            .env
            .envctl()
            .args(["pool", "drain", &self.env.name])
            .run();
        let _ = Command::new("docker")
            .args(["rmi", &format!("{}:{}", self.repository, self.tag)])
            .output();
    }
}

#[test]
fn a_request_for_an_unknown_ref_creates_the_environment_once_and_is_answered_by_it() {
    let tagged = Tagged::new("gw-create");
    let gateway = Gateway::start(&tagged.env, &["--create"]);
    let host = format!("{}.{}.localhost", &tagged.tag[..8], tagged.env.name);
    // A browser gets the progress page, which reloads itself.
    let page = request(
        gateway.port,
        "GET",
        &host,
        "/",
        &[("accept", "text/html")],
        vec![],
    );
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(
        page.body.contains("http-equiv=\"refresh\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Creating"), "{}", page.body);
    // Any other request waits for the same creation, then is answered by the environment.
    let port = gateway.port;
    let answers = block_on(async {
        let asking = (0..6).map(|_| async_request(port, "GET", &host, "/", &[], vec![]));
        futures_util::future::join_all(asking).await
    });
    for answer in &answers {
        assert_eq!((answer.status, answer.body.as_str()), (200, "created ok\n"));
    }
    let created = tagged.environments();
    assert_eq!(created.len(), 1, "one creation for them all: {created:?}");
    assert_eq!(created[0]["owner"], "gateway:127.0.0.1", "{created:?}");
    assert_eq!(created[0]["state"], "ready", "{created:?}");
    // Now it is there, the browser gets the application.
    let page = request(
        gateway.port,
        "GET",
        &host,
        "/",
        &[("accept", "text/html")],
        vec![],
    );
    assert_eq!((page.status, page.body.as_str()), (200, "created ok\n"));
}

#[test]
fn a_request_for_a_ref_no_image_has_creates_nothing_and_answers_404_with_the_closest_tags() {
    let tagged = Tagged::new("gw-no-ref");
    let gateway = Gateway::start(&tagged.env, &["--create"]);
    let unknown = if tagged.tag.starts_with('0') {
        "1"
    } else {
        "0"
    };
    let reference = format!("{unknown}{}", &tagged.tag[1..8]);
    let host = format!("{reference}.{}.localhost", tagged.env.name);
    let answer = gateway.get(&host, "/");
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(answer.body.contains(&reference), "{}", answer.body);
    assert!(
        answer.body.contains(&tagged.tag),
        "the closest tag: {}",
        answer.body
    );
    // Too short a REF, or a file that is not in the directory, is just an unknown host.
    let short = format!("{}.{}.localhost", &tagged.tag[..6], tagged.env.name);
    assert_eq!(gateway.get(&short, "/").status, 404);
    let elsewhere = format!("{}.no-such-file.localhost", &tagged.tag[..8]);
    assert_eq!(gateway.get(&elsewhere, "/").status, 404);
    assert!(tagged.environments().is_empty());
}

#[test]
fn a_creation_that_fails_shows_its_failure_with_the_last_lines_and_is_remembered() {
    let tagged = Tagged::running(
        "gw-create-fails",
        "[exit, \"3\", --message, \"cannot reach the database\"]",
    );
    let gateway = Gateway::start(&tagged.env, &["--create"]);
    let host = format!("{}.{}.localhost", &tagged.tag[..8], tagged.env.name);
    let answer = gateway.get(&host, "/");
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(
        answer.body.contains("cannot reach the database"),
        "the service's last lines: {}",
        answer.body
    );
    assert!(tagged.environments().is_empty(), "rolled back");
    let marker = format!("envctl_{}-{}_create", tagged.env.name, &tagged.tag[..8]);
    let left = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name={marker}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert_eq!(
        left.trim(),
        "",
        "no creation marker left to hold up a retry"
    );
    // Remembered: the next request is answered at once, with a retry offered.
    let again = gateway.get(&host, "/");
    assert_eq!(again.status, 502);
    assert!(again.body.contains("envctl-retry"), "{}", again.body);
}

#[test]
fn the_create_form_creates_an_environment_with_its_ttl_and_leads_to_its_url() {
    let tagged = Tagged::new("gw-create-form");
    let gateway = Gateway::start(&tagged.env, &["--create"]);
    let form = gateway.get("localhost", "/create");
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("name=\"reference\""), "{}", form.body);
    let reference = &tagged.tag[..9];
    let created = post_form(
        &gateway,
        "/create",
        &format!(
            "csrf={}&environment={}&reference={reference}&ttl=1h",
            csrf_of(&gateway),
            tagged.env.name
        ),
        None,
    );
    let host = format!("{reference}.{}.localhost", tagged.env.name);
    assert_eq!(created.status, 303, "{}", created.body);
    assert_eq!(
        created.headers["location"],
        format!("http://{host}:{}/", gateway.port).as_str()
    );
    let answer = gateway.get(&host, "/");
    assert_eq!((answer.status, answer.body.as_str()), (200, "created ok\n"));
    let environments = tagged.environments();
    assert_eq!(environments.len(), 1, "{environments:?}");
    let expires = environments[0]["expires_at"].as_str().unwrap_or_default();
    let expires = chrono::DateTime::parse_from_rfc3339(expires).expect("a TTL");
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(50) && left <= chrono::Duration::hours(1),
        "the form's 1h, not the default 8h: {left}"
    );
    // An unknown changeset through the form is waited for (CI may still build it), not 404.
    let unknown = post_form(
        &gateway,
        "/create",
        &format!(
            "csrf={}&environment={}&reference=zzzzzzzz",
            csrf_of(&gateway),
            tagged.env.name
        ),
        None,
    );
    assert_eq!(unknown.status, 303, "{}", unknown.body);
    let waiting = request(
        gateway.port,
        "GET",
        &format!("zzzzzzzz.{}.localhost", tagged.env.name),
        "/",
        &[("accept", "text/html")],
        vec![],
    );
    assert!(
        waiting.body.contains("to appear in the registry"),
        "{}",
        waiting.body
    );
}

#[test]
fn two_gateways_asked_at_once_create_one_environment() {
    let tagged = Tagged::new("gw-create-two");
    let (one, two) = (
        Gateway::start(&tagged.env, &["--create"]),
        Gateway::start(&tagged.env, &["--create"]),
    );
    let host = format!("{}.{}.localhost", &tagged.tag[..8], tagged.env.name);
    let answers = block_on(async {
        let asking = [one.port, two.port, one.port, two.port]
            .map(|port| async_request(port, "GET", &host, "/", &[], vec![]));
        futures_util::future::join_all(asking).await
    });
    for answer in &answers {
        assert_eq!((answer.status, answer.body.as_str()), (200, "created ok\n"));
    }
    let created = tagged.environments();
    assert_eq!(
        created.len(),
        1,
        "one creation across gateways: {created:?}"
    );
}

#[test]
fn off_loopback_a_creation_needs_the_token_and_a_client_its_hourly_share() {
    let tagged = Tagged::new("gw-create-token");
    // A second changeset, tagged before the gateway caches the repository's tags.
    let second_tag = format!("ffff{}", &tagged.tag[4..]);
    let _removed = Untag(format!("{}:{second_tag}", tagged.repository));
    let tagged_again = Command::new("docker")
        .args(["tag", IMAGE, &_removed.0])
        .status()
        .unwrap();
    assert!(tagged_again.success());
    let token_file = tagged.env.dir.file("token");
    std::fs::write(&token_file, "correct-horse-battery\n").unwrap();
    let gateway = Gateway::listening(
        &tagged.env,
        "0.0.0.0:0",
        &[
            "--create",
            "--max-creates",
            "1",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let host = format!("{}.{}.localhost", &tagged.tag[..8], tagged.env.name);
    let refused = gateway.get(&host, "/");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(tagged.environments().is_empty());
    let bearer = [("authorization", "Bearer correct-horse-battery")];
    let answer = request(gateway.port, "GET", &host, "/", &bearer, vec![]);
    assert_eq!((answer.status, answer.body.as_str()), (200, "created ok\n"));
    // A second creation by the same client within the hour: refused, nothing created.
    let other = format!("{}.{}.localhost", &second_tag[..8], tagged.env.name);
    let second = request(gateway.port, "GET", &other, "/", &bearer, vec![]);
    assert_eq!(second.status, 429, "{}", second.body);
    assert_eq!(tagged.environments().len(), 1);
}

/// Removes an image tag when dropped.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", &self.0]).output();
    }
}

#[test]
fn the_page_of_a_started_environment_shows_its_services_and_their_last_log_lines() {
    let env = TestEnv::new("gw-envpage", &web("paged", "0"));
    let id = format!("{}-x", env.name);
    up(&env, &[&env.name, "--name", &id]);
    let gateway = Gateway::start(&env, &[]);
    gateway.until_routed(&format!("{id}.localhost"));
    let list = gateway.get("localhost", "/");
    assert!(
        row_of(&list.body, &id).contains(&format!("href=\"/env/{id}\"")),
        "the list links the page: {}",
        list.body
    );
    let page = gateway.get("localhost", &format!("/env/{id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-service=\"web\""), "{}", page.body);
    assert!(
        page.body.contains("<td class=\"state\">running</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("paged: ready on port 8080"),
        "a log line: {}",
        page.body
    );
    assert!(page.body.contains("8080-&gt;"), "its port: {}", page.body);
    assert!(
        page.body.contains("http-equiv=\"refresh\""),
        "{}",
        page.body
    );
    let missing = gateway.get("localhost", "/env/no-such-environment");
    assert_eq!(missing.status, 404);
}

#[test]
fn a_creation_from_the_form_waits_for_its_image_to_appear_in_the_registry() {
    let tagged = Tagged::new("gw-await");
    let gateway = Gateway::start(&tagged.env, &["--create"]);
    // A tag CI has not pushed yet.
    let first = if tagged.tag.starts_with('f') {
        'e'
    } else {
        'f'
    };
    let later = format!("{first}{}", &tagged.tag[1..]);
    let reference = &later[..9];
    let created = post_form(
        &gateway,
        "/create",
        &format!(
            "csrf={}&environment={}&reference={reference}",
            csrf_of(&gateway),
            tagged.env.name
        ),
        None,
    );
    assert_eq!(created.status, 303, "waited for, not 404: {}", created.body);
    let host = format!("{reference}.{}.localhost", tagged.env.name);
    let browser = || {
        request(
            gateway.port,
            "GET",
            &host,
            "/",
            &[("accept", "text/html")],
            vec![],
        )
    };
    let page = browser();
    assert_eq!(page.status, 503, "{}", page.body);
    let awaited = format!(
        "waiting for <code>{}:{reference}</code> to appear in the registry",
        tagged.repository
    );
    assert!(page.body.contains(&awaited), "{}", page.body);
    assert!(tagged.environments().is_empty());
    // CI pushes it.
    let pushed = format!("{}:{later}", tagged.repository);
    struct Untag(String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", &self.0]).output();
        }
    }
    assert!(
        Command::new("docker")
            .args(["tag", IMAGE, &pushed])
            .status()
            .unwrap()
            .success()
    );
    let _untag = Untag(pushed);
    // Tag lists, misses included, are looked up once a minute.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let answer = gateway.get(&host, "/");
        if answer.status == 200 {
            assert_eq!(answer.body, "created ok\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not created once the image appeared: {} {}\n{}",
            answer.status,
            answer.body,
            browser().body
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let environments = tagged.environments();
    assert_eq!(environments.len(), 1, "{environments:?}");
}

#[test]
fn a_creation_on_request_adopts_a_ready_pool_member_once_across_gateways() {
    let tagged = Tagged::pooled("gw-create-pool");
    let env = &tagged.env;
    env.envctl()
        .args(["pool", "fill", &env.name])
        .run()
        .success()
        .stderr_has("is ready");
    let members = || {
        let ls = env.envctl().args(["pool", "ls", "-o", "json"]).run();
        let rows = ls.success().json();
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["environment"] == env.name.as_str())
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<Vec<String>>()
    };
    let filled = members();
    assert_eq!(filled.len(), 1, "{filled:?}");
    let member = &filled[0];
    let (one, two) = (
        Gateway::start(env, &["--create"]),
        Gateway::start(env, &["--create"]),
    );
    let host = format!("{}.{}.localhost", &tagged.tag[..8], env.name);
    let answers = block_on(async {
        let asking = [one.port, two.port, one.port, two.port, one.port, two.port]
            .map(|port| async_request(port, "GET", &host, "/", &[], vec![]));
        futures_util::future::join_all(asking).await
    });
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.body.contains("created ok"), "{}", answer.body);
        assert!(answer.body.contains("database:1521 ok"), "{}", answer.body);
    }
    let created = tagged.environments();
    assert_eq!(
        created.len(),
        1,
        "one creation across gateways: {created:?}"
    );
    assert_eq!(
        created[0]["id"],
        member.as_str(),
        "the member's id: {created:?}"
    );
    assert_eq!(created[0]["owner"], "gateway:127.0.0.1", "{created:?}");
    assert!(members().is_empty(), "adopted, out of the pool");
    let page = one.get("localhost", &format!("/env/{member}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-service=\"web\""), "{}", page.body);
    assert!(page.body.contains("data-service=\"db\""), "{}", page.body);
    // No creation marker is left to be mistaken for an environment, and the URL still works.
    let again = one.get(&host, "/");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(tagged.environments().len(), 1);
    let marker = format!("envctl_{}-{}_create", env.name, &tagged.tag[..8]);
    let left = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name={marker}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "the creation marker is gone"
    );
}

#[test]
fn the_reaper_collects_the_creation_of_a_killed_gateway() {
    let tagged = Tagged::running(
        "gw-create-killed",
        "[serve, --name, created, --port, \"8080\", --delay, \"60s\"]",
    );
    let env = &tagged.env;
    let gateway = Gateway::start(env, &["--create"]);
    let host = format!("{}.{}.localhost", &tagged.tag[..8], env.name);
    let html = [("accept", "text/html")];
    let page = request(gateway.port, "GET", &host, "/", &html, vec![]);
    assert_eq!(page.status, 503, "creating: {}", page.body);
    let marker = format!("envctl_{}-{}_create", env.name, &tagged.tag[..8]);
    let exists = || {
        let listed = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                &format!("name={marker}"),
                "--format",
                "{{.Names}}",
            ])
            .output()
            .unwrap();
        !String::from_utf8_lossy(&listed.stdout).trim().is_empty()
    };
    crate::support::wait_until(
        "the creation marker is set",
        Duration::from_secs(30),
        exists,
    );
    gateway.kill();
    env.reap(&[]).success();
    assert!(
        !exists(),
        "the killed gateway's creation marker is collected"
    );
    assert!(
        tagged.environments().is_empty(),
        "its unfinished start removed"
    );
    // The next gateway creates it again.
    let gateway = Gateway::start(env, &["--create"]);
    let page = request(gateway.port, "GET", &host, "/", &html, vec![]);
    assert_eq!(page.status, 503, "creating again: {}", page.body);
    crate::support::wait_until("created again", Duration::from_secs(30), || {
        tagged.environments().len() == 1
    });
    gateway.kill();
    env.reap(&[]).success();
    assert!(!exists());
}
