//! The listener: hyper's HTTP/1.1 server with upgrades, bounded header reads, each request
//! dispatched by its host name to the page, an environment, or the 404 page.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::ServiceExt;

use super::environments::RoutedEnvironment;
use super::metrics::Outcome;
use super::proxy::{self, Forwarded, Limits, ProxyError};
use super::routing::{self, Target};
use super::{Awake, Gateway, page};
use crate::lifecycle::State;

/// How long a client may take to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Serves until `shutdown` resolves, then writes the last activity.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) {
    gateway.refresh().await;
    let watcher = tokio::spawn(gateway.clone().watch());
    let flusher = tokio::spawn(gateway.clone().flush_loop());
    let router = page::router(gateway.clone());
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: let some connections end.
                    tracing::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (gateway, router) = (gateway.clone(), router.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (gateway, router) = (gateway.clone(), router.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handle(gateway, router, remote, request).await,
                    )
                }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(error) = served {
                tracing::debug!("connection from {remote}: {error}");
            }
        });
    }
    watcher.abort();
    flusher.abort();
    gateway.flush().await;
}

/// Answers one request.
pub async fn handle(
    gateway: Arc<Gateway>,
    router: Router,
    remote: SocketAddr,
    mut request: Request<Incoming>,
) -> Response<Body> {
    if request.method() == Method::OPTIONS && request.uri() == "*" {
        return options_star();
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_string();
    match routing::resolve(&host, &gateway.options.domain, &gateway.snapshot()) {
        Target::Page => {
            request.extensions_mut().insert(page::Client(remote.ip()));
            match router.oneshot(request.map(Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
        Target::Unknown => super::create::answer(&gateway, &host, remote, request).await,
        Target::Environment(id) => to_environment(gateway, id, host, remote, request).await,
    }
}

/// `OPTIONS *` asks what the server supports, not what a resource does: the gateway
/// answers for itself, whatever the host.
fn options_star() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    response.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    response
}

/// What to do with a request for an environment in its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Proxy(SocketAddr),
    /// Stopped (or its entry service is): start it.
    Wake,
    /// Someone else's start is under way.
    Wait,
    /// It cannot answer, and requests do not change that.
    Refuse(StatusCode, String),
}

/// Decides from the environment's state alone.
pub fn next(environment: &RoutedEnvironment) -> Next {
    // A start under way may have created none of its services yet, its entry among them.
    if matches!(environment.state, State::Starting | State::Updating) {
        return Next::Wait;
    }
    let entry = match &environment.entry {
        Ok(entry) => entry,
        Err(why) => {
            return Next::Refuse(
                StatusCode::BAD_GATEWAY,
                format!("`{}` has no entry for the gateway: {why}", environment.id),
            );
        }
    };
    match (environment.state, entry.address) {
        (State::Ready | State::Degraded, Some(address)) => Next::Proxy(address),
        // Paused for idleness: resumed in milliseconds, through the same single start.
        (State::Paused, _) => Next::Wake,
        (State::Stopped | State::Degraded, _) if environment.stopped_for_errors => Next::Refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "`{}` was stopped for its error rate; requests do not wake it. Start it on the \
                 gateway's page or with `envctl start {}`",
                environment.id, environment.id
            ),
        ),
        (State::Stopped | State::Degraded, _) => Next::Wake,
        // An update replaces services and puts them back: it ends soon either way.
        (State::Starting | State::Updating, _) => Next::Wait,
        (State::Ready, None) => Next::Refuse(
            StatusCode::BAD_GATEWAY,
            format!(
                "`{}`'s port {} of `{}` is not published",
                environment.id, entry.port, entry.service
            ),
        ),
        (State::UpdateUnfinished, _) => Next::Refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "an update of `{}` was left half-way; `envctl start {}` restores its previous \
                 services",
                environment.id, environment.id
            ),
        ),
        (state @ (State::Unfinished | State::Debris), _) => Next::Refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "`{}` is {}: its start never finished, so it cannot be woken",
                environment.id,
                state.as_str()
            ),
        ),
    }
}

/// Whether the client is a browser, which gets pages instead of bare answers.
pub(super) fn accepts_html(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

fn retry_later(mut response: Response<Body>, seconds: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    response
}

pub(super) async fn to_environment(
    gateway: Arc<Gateway>,
    id: String,
    host: String,
    remote: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let Some(mut environment) = gateway.find(&id) else {
        return page::unknown_host(&gateway, &host);
    };
    let mut plan = next(&environment);
    if matches!(plan, Next::Wake | Next::Wait) {
        // A paused environment answers sooner than a waiting page would load.
        let resuming = environment.state == State::Paused;
        if accepts_html(&request) && !resuming {
            if plan == Next::Wake {
                gateway.start_once(&id, "a request through `envctl gateway`");
            }
            return page::waiting(&id);
        }
        let awake = match plan {
            Next::Wake => gateway.wake(&id, gateway.options.wake_timeout).await,
            _ => wait_for_start(&gateway, &id).await,
        };
        match awake {
            Awake::Ready(ready) => {
                environment = *ready;
                plan = next(&environment);
            }
            Awake::Failed(error) => {
                return page::problem(
                    StatusCode::BAD_GATEWAY,
                    "the environment did not start",
                    &format!("starting `{id}` failed: {error}"),
                );
            }
            Awake::TimedOut => {
                return retry_later(
                    page::problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "still starting",
                        &format!(
                            "`{id}` is still starting after {}",
                            humantime::format_duration(gateway.options.wake_timeout)
                        ),
                    ),
                    "5",
                );
            }
        }
    }
    let address = match plan {
        Next::Proxy(address) => address,
        Next::Refuse(status, why) => {
            return retry_later(page::problem(status, "not available", &why), "30");
        }
        Next::Wake | Next::Wait => {
            return retry_later(
                page::problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not available",
                    &format!("`{id}` stopped again as it started"),
                ),
                "5",
            );
        }
    };
    let service = environment
        .entry
        .as_ref()
        .map(|e| e.service.clone())
        .unwrap_or_default();
    let forwarded = Forwarded {
        client: remote.ip(),
        host,
    };
    let limits = Limits {
        max_body: gateway.options.max_body,
        answer_within: gateway.options.request_timeout,
    };
    let started = Instant::now();
    let result = proxy::forward(
        &gateway.client,
        request,
        &service,
        address,
        &forwarded,
        limits,
        gateway.activity.tracker(&id),
    )
    .await;
    let outcome = match &result {
        Ok(response) => Outcome::Answered(response.status().as_u16()),
        Err(error) => error.outcome(),
    };
    gateway.record(&id, outcome, started.elapsed());
    match result {
        Ok(response) => response,
        Err(error @ ProxyError::Unreachable { .. } | error @ ProxyError::TimedOut { .. }) => {
            page::problem(error.status(), "no answer", &error.to_string())
        }
        Err(error) => page::problem(error.status(), "refused", &error.to_string()),
    }
}

/// Waits, up to the wake timeout, for a start someone else runs (`envctl up`, `start`) or an
/// update to end.
pub(super) async fn wait_for_start(gateway: &Gateway, id: &str) -> Awake {
    let deadline = Instant::now() + gateway.options.wake_timeout;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match gateway.find(id) {
            Some(environment) if environment.running() => {
                return Awake::Ready(Box::new(environment));
            }
            // The start, or an update: `next` sends requests to wait for either.
            Some(environment) if matches!(environment.state, State::Starting | State::Updating) => {
            }
            Some(environment) => {
                return Awake::Failed(format!("it is {}", environment.state.as_str()));
            }
            None => return Awake::Failed("it was removed".into()),
        }
    }
    Awake::TimedOut
}
