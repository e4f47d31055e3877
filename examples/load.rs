//! A bounded HTTP load generator for `bench/gateway.py`: loopback only, a fixed number of
//! seconds, no retries.
//!
//!     load rate URL HOST RATE SECONDS     open loop at RATE requests/s: latency percentiles
//!     load max URL HOST CONNECTIONS SECONDS   closed loop: the most requests/s
//!
//! Latency in `rate` mode counts from when each request was due, not when it was sent, so a
//! stalled server shows in the figures instead of slowing the load down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Pool = Client<HttpConnector, Body>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, url, host, amount, seconds] = args.as_slice() else {
        eprintln!("usage: load rate|max URL HOST AMOUNT SECONDS");
        std::process::exit(1);
    };
    let url: hyper::Uri = url.parse().expect("a URL");
    let host_is_loopback = url
        .host()
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    assert!(host_is_loopback, "loopback addresses only");
    let amount: u64 = amount.parse().expect("a number");
    let seconds: u64 = seconds.parse().expect("seconds");
    assert!(seconds <= 120, "at most 120 s");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Pool = Client::builder(TokioExecutor::new()).build(connector);
        let target = Arc::new((client, url, host.clone()));
        match mode.as_str() {
            "rate" => rate(target, amount, Duration::from_secs(seconds)).await,
            "max" => max(target, amount, Duration::from_secs(seconds)).await,
            _ => eprintln!("the mode is `rate` or `max`"),
        }
    });
}

async fn get(target: &(Pool, hyper::Uri, String)) -> bool {
    let (client, url, host) = target;
    let request = hyper::Request::get(url.clone())
        .header("host", host.as_str())
        .body(Body::empty())
        .expect("a request");
    match client.request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

async fn rate(target: Arc<(Pool, hyper::Uri, String)>, per_second: u64, length: Duration) {
    let interval = Duration::from_secs_f64(1.0 / per_second as f64);
    let start = tokio::time::Instant::now();
    let total = (length.as_secs_f64() * per_second as f64) as u64;
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + interval * n as u32;
        tokio::time::sleep_until(due).await;
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let ok = get(&target).await;
            (ok, due.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for task in tasks {
        let (ok, took) = task.await.expect("a request task");
        if ok {
            latencies.push(took);
        } else {
            failed += 1;
        }
    }
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "{{\"requests\": {}, \"failed\": {failed}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \
         \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
        latencies.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

async fn max(target: Arc<(Pool, hyper::Uri, String)>, connections: u64, length: Duration) {
    let deadline = Instant::now() + length;
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let (mut done, mut failed) = (0u64, 0u64);
                while Instant::now() < deadline {
                    if get(&target).await {
                        done += 1;
                    } else {
                        failed += 1;
                    }
                }
                (done, failed)
            })
        })
        .collect();
    let (mut done, mut failed) = (0, 0);
    for worker in workers {
        let (d, f) = worker.await.expect("a worker");
        done += d;
        failed += f;
    }
    println!(
        "{{\"requests\": {done}, \"failed\": {failed}, \"per_second\": {:.0}}}",
        done as f64 / length.as_secs_f64()
    );
}
