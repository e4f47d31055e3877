//! Forwarding one request to an environment with hyper: the body streams both ways, upgrades
//! (WebSocket) become a byte pipe, connections to environments are pooled and kept alive.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client as Pool;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::metrics::{Outcome, Rejection};

/// The pooled HTTP/1.1 client requests to environments go through.
pub type Client = Pool<HttpConnector, Body>;

pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Pool::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Headers that concern one connection only (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// The protocol a request asks to upgrade to (`websocket`), if it asks.
pub fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Who asked, for the `X-Forwarded-*` headers.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub client: IpAddr,
    pub host: String,
}

/// Why a request got no answer from its environment.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the request body broke off: {0}")]
    BodyUnreadable(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("no answer from `{service}` within {}", humantime::format_duration(*.waited))]
    TimedOut { service: String, waited: Duration },
    #[error("cannot reach `{service}` at {address}: {reason}")]
    Unreachable {
        service: String,
        address: SocketAddr,
        reason: String,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyUnreadable(_) | ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whom the failure is counted for: the client's own mistakes are the gateway's refusals,
    /// never the environment's errors.
    pub fn outcome(&self) -> Outcome {
        match self {
            ProxyError::TooLarge(_) => Outcome::Rejected(Rejection::BodyTooLarge),
            ProxyError::BodyUnreadable(_) => Outcome::Rejected(Rejection::BodyUnreadable),
            ProxyError::BadRequest(_) => Outcome::Rejected(Rejection::BadRequest),
            ProxyError::TimedOut { .. } | ProxyError::Unreachable { .. } => {
                Outcome::Answered(self.status().as_u16())
            }
        }
    }
}

/// What went wrong with the client's body while it was forwarded, if anything did: a failed
/// send is then the client's doing, not the environment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFailure {
    TooLarge,
    Unreadable,
}

/// The client's body, limited to `--max-body`, noting why it failed when it does.
struct Watched {
    inner: Limited<Incoming>,
    failure: Arc<OnceLock<BodyFailure>>,
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(error))) = &polled {
            let failure = match error.is::<LengthLimitError>() {
                true => BodyFailure::TooLarge,
                false => BodyFailure::Unreadable,
            };
            let _ = self.failure.set(failure);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Limits for one forwarded request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: u64,
    /// Until the answer's head arrives; the body then streams as long as it lasts.
    pub answer_within: Duration,
}

/// Forwards `request` to `service` at `address`.
pub async fn forward(
    client: &Client,
    mut request: Request<Incoming>,
    service: &str,
    address: SocketAddr,
    forwarded: &Forwarded,
    limits: Limits,
    tracker: super::activity::Tracker,
) -> Result<Response<Body>, ProxyError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body) {
        return Err(ProxyError::TooLarge(limits.max_body));
    }
    if request.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest(
            "`CONNECT` does not go through the gateway: it forwards requests to environments, \
             it opens no tunnels"
                .into(),
        ));
    }
    let upgrade = upgrade_of(request.headers());
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    set_forwarded(&mut parts.headers, forwarded);
    keep_host(&mut parts.headers, forwarded);
    if let Some(protocol) = &upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if !path.starts_with('/') {
        return Err(ProxyError::BadRequest(format!(
            "`{path}` names no resource of the environment: a request target is a path (`/...`) \
             or an absolute URL"
        )));
    }
    let failure = Arc::new(OnceLock::new());
    let body = Body::new(Watched {
        inner: Limited::new(body, limits.max_body as usize),
        failure: failure.clone(),
    });
    let unreachable = |reason: String| match failure.get() {
        Some(BodyFailure::TooLarge) => ProxyError::TooLarge(limits.max_body),
        Some(BodyFailure::Unreadable) => ProxyError::BodyUnreadable(reason),
        None => ProxyError::Unreachable {
            service: service.to_string(),
            address,
            reason,
        },
    };
    let sending = async {
        match client_upgrade {
            None => {
                parts.uri = Uri::try_from(format!("http://{address}{path}"))
                    .map_err(|e| ProxyError::BadRequest(format!("`{path}`: {e}")))?;
                client
                    .request(Request::from_parts(parts, body))
                    .await
                    .map(|r| r.map(|body| tracked(body, tracker.open())))
                    .map_err(|e| unreachable(describe(&e)))
            }
            Some(client_upgrade) => {
                parts.uri = Uri::try_from(path.as_str())
                    .map_err(|e| ProxyError::BadRequest(format!("`{path}`: {e}")))?;
                let request = Request::from_parts(parts, body);
                upgrade_through(request, address, client_upgrade, tracker)
                    .await
                    .map_err(unreachable)
            }
        }
    };
    let mut response = tokio::time::timeout(limits.answer_within, sending)
        .await
        .map_err(|_| ProxyError::TimedOut {
            service: service.to_string(),
            waited: limits.answer_within,
        })??;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        strip_hop_by_hop(response.headers_mut());
    }
    Ok(response)
}

/// The environment's answer, counted as activity until its body ends or its client leaves: a
/// download or server-sent events keep the environment in use while they stream.
fn tracked<B>(body: B, open: super::activity::Stream) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    Body::new(body.map_frame(move |frame| {
        let _open = &open;
        frame
    }))
}

/// An upgrade goes over a connection of its own: once switched it is a byte pipe between the
/// client and the environment, which no pool could reuse.
async fn upgrade_through(
    request: Request<Body>,
    address: SocketAddr,
    client_upgrade: hyper::upgrade::OnUpgrade,
    tracker: super::activity::Tracker,
) -> Result<Response<Body>, String> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| describe(&e))?;
    tokio::spawn(connection.with_upgrades());
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| describe(&e))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(response.map(Body::new));
    }
    let server_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (Ok(client), Ok(server)) = tokio::join!(client_upgrade, server_upgrade) else {
            return;
        };
        // An open WebSocket is use of the environment, messages or not.
        let _open = tracker.open();
        let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    });
    Ok(response.map(|_| Body::empty()))
}

fn set_forwarded(headers: &mut HeaderMap, forwarded: &Forwarded) {
    let client = forwarded.client.to_string();
    let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client}"),
        None => client,
    };
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("x-forwarded-for", &chain);
    set("x-forwarded-host", &forwarded.host);
    set("x-forwarded-proto", "http");
}

/// A request without `Host` (HTTP/1.0, or the absolute form `GET http://ID.localhost/`) reaches
/// the environment with the host it was routed by, not the address the gateway connects to.
fn keep_host(headers: &mut HeaderMap, forwarded: &Forwarded) {
    if headers.contains_key(header::HOST) || forwarded.host.is_empty() {
        return;
    }
    if let Ok(host) = HeaderValue::from_str(&forwarded.host) {
        headers.insert(header::HOST, host);
    }
}

/// The innermost cause of a client error: "connection refused", not "client error (Connect)".
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert(header::ACCEPT, "text/html".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn an_upgrade_needs_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert_eq!(upgrade_of(&headers), None);
        headers.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert_eq!(upgrade_of(&headers).unwrap(), "websocket");
    }

    #[test]
    fn a_request_without_host_gets_the_host_it_was_routed_by() {
        let forwarded = Forwarded {
            client: [127, 0, 0, 1].into(),
            host: "x.localhost:8000".into(),
        };
        let mut headers = HeaderMap::new();
        keep_host(&mut headers, &forwarded);
        assert_eq!(headers[header::HOST], "x.localhost:8000");
        headers.insert(header::HOST, "y.localhost".parse().unwrap());
        keep_host(&mut headers, &forwarded);
        assert_eq!(headers[header::HOST], "y.localhost", "a Host is kept");
    }

    #[test]
    fn the_clients_mistakes_are_rejections_and_the_environments_failures_are_its_own() {
        let gateway_refused = [
            ProxyError::TooLarge(1024),
            ProxyError::BodyUnreadable("connection reset".into()),
            ProxyError::BadRequest("`*`".into()),
        ];
        for error in gateway_refused {
            assert!(matches!(error.outcome(), Outcome::Rejected(_)), "{error}");
            assert!(error.status().is_client_error(), "{error}");
        }
        let unreachable = ProxyError::Unreachable {
            service: "web".into(),
            address: ([127, 0, 0, 1], 1).into(),
            reason: "connection refused".into(),
        };
        assert_eq!(unreachable.outcome(), Outcome::Answered(502));
    }

    #[test]
    fn forwarded_headers_extend_the_chain() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "10.0.0.9".parse().unwrap());
        let forwarded = Forwarded {
            client: [127, 0, 0, 1].into(),
            host: "x.localhost:8000".into(),
        };
        set_forwarded(&mut headers, &forwarded);
        assert_eq!(headers["x-forwarded-for"], "10.0.0.9, 127.0.0.1");
        assert_eq!(headers["x-forwarded-host"], "x.localhost:8000");
        assert_eq!(headers["x-forwarded-proto"], "http");
    }
}
