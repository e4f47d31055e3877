//! The gateway's own pages: the list of environments with its actions, the sign-in form, the
//! 404 page of unknown hosts and the waiting page of a wake. Server-rendered HTML without
//! JavaScript; every action is a POST carrying the per-process CSRF secret.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Gateway;
use super::environments::{RoutedEnvironment, ServiceView};
use super::metrics::Rejection;
use crate::output::short_duration;

/// The cookie that carries the session after a sign-in (never the token itself).
pub const COOKIE: &str = "envctl_gateway";

/// The address a request for the page came from, for the throttling of wrong tokens.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub std::net::IpAddr);
/// The page reloads itself this often, so a change shows within it.
pub const REFRESH_SECONDS: u32 = 5;
/// How many of each service's last log lines the page of an environment shows.
pub const LOG_LINES: u64 = 20;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(list))
        .route("/metrics", get(metrics))
        .route("/login", get(login_form).post(login))
        .route("/env/{id}", get(environment))
        .route("/confirm/down/{id}", get(confirm_down))
        .route("/act/{action}/{id}", post(act))
        .route("/create", get(create_form).post(create))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(gateway)
}

#[derive(Deserialize)]
struct Message {
    done: Option<String>,
}

async fn list(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(message): Query<Message>,
) -> Response {
    // As last listed: the gateway lists at every change the engine reports and every few
    // seconds, so a page that reloads itself adds no listing of its own.
    let environments = gateway.snapshot();
    let view = View {
        gateway: &gateway,
        authorized: authorized(&gateway, &headers),
        now: Utc::now(),
    };
    html(
        StatusCode::OK,
        view.list_page(&environments, message.done.as_deref()),
    )
}

/// The page of one environment: its services' state, health, restarts, ports and last log
/// lines, reloading itself. Log lines are for those who may act (they may hold secrets).
async fn environment(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(environment) = gateway.find(&id) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "no such environment",
            &format!(
                "There is no environment <b>{}</b>. <a href=\"/\">the list</a>",
                escape(&id)
            ),
        );
    };
    let authorized = authorized(&gateway, &headers);
    let lines = if authorized { LOG_LINES } else { 0 };
    let services = gateway.environments().services(&id, lines).await;
    let view = View {
        gateway: &gateway,
        authorized,
        now: Utc::now(),
    };
    html(
        StatusCode::OK,
        view.environment_page(&environment, &services),
    )
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    let text = gateway.metrics.render(&gateway.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn login_form(State(gateway): State<Arc<Gateway>>) -> Response {
    let body = format!(
        "<h1>Sign in</h1><p>Actions on this gateway need its token (the file given with \
         <code>--token-file</code>). This browser then keeps a session cookie, never the token.</p>\
         <form method=\"post\" action=\"/login\">{}<label>token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label> \
         <button>sign in</button></form><p><a href=\"/\">back to the list</a></p>",
        csrf_field(&gateway)
    );
    html(StatusCode::OK, document("sign in", None, &body))
}

#[derive(Deserialize)]
struct Login {
    csrf: String,
    token: String,
}

async fn login(
    State(gateway): State<Arc<Gateway>>,
    Extension(Client(client)): Extension<Client>,
    headers: HeaderMap,
    Form(login): Form<Login>,
) -> Response {
    if let Some(refused) = refuse_forgery(&gateway, &headers, &login.csrf) {
        return refused;
    }
    let now = tokio::time::Instant::now();
    if let Err(wait) = gateway.throttle.check(client, now) {
        gateway.metrics.rejected(Rejection::LoginThrottled);
        return too_many_wrong_tokens(wait);
    }
    match &gateway.options.token {
        Some(token) if same(token, &login.token) => {
            gateway.throttle.succeeded(client);
            let session = gateway.sessions.issue();
            let cookie = format!("{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/");
            let mut response = Redirect::to("/?done=signed+in").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Some(_) => {
            gateway.throttle.failed(client, now);
            message_page(
                StatusCode::FORBIDDEN,
                "wrong token",
                "That is not this gateway's token.",
            )
        }
        None => Redirect::to("/").into_response(),
    }
}

/// 429 for an address that sent wrong tokens too often, with when to try again.
fn too_many_wrong_tokens(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = message_page(
        StatusCode::TOO_MANY_REQUESTS,
        "too many wrong tokens",
        &format!(
            "This address sent too many wrong tokens: try again in {seconds} s. \
             <a href=\"/login\">sign in</a>"
        ),
    );
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn confirm_down(State(gateway): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    let body = format!(
        "<h1>Remove {id}?</h1><p>This stops and removes every container of <b>{id}</b> and its \
         network, like <code>envctl down {id}</code>. It cannot be undone.</p>\
         <form method=\"post\" action=\"/act/down/{id}\">{}\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <button class=\"danger\">remove {id}</button></form><p><a href=\"/\">cancel</a></p>",
        csrf_field(&gateway),
        id = escape(&id)
    );
    html(StatusCode::OK, document("remove?", None, &body))
}

#[derive(Deserialize)]
struct ActForm {
    csrf: String,
    confirm: Option<String>,
}

async fn act(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path((action, id)): Path<(String, String)>,
    Form(form): Form<ActForm>,
) -> Response {
    if let Some(refused) = refuse_forgery(&gateway, &headers, &form.csrf) {
        return refused;
    }
    if !authorized(&gateway, &headers) {
        return message_page(
            StatusCode::FORBIDDEN,
            "sign in first",
            "Actions on this gateway need its token: <a href=\"/login\">sign in</a>.",
        );
    }
    if gateway.find(&id).is_none() {
        gateway.refresh().await;
        if gateway.find(&id).is_none() {
            return message_page(
                StatusCode::NOT_FOUND,
                "no such environment",
                &format!("There is no environment <b>{}</b>.", escape(&id)),
            );
        }
    }
    let environments = gateway.environments();
    let result = match action.as_str() {
        "touch" => environments.touch(&id).await.map(|()| "touched"),
        "pin" => environments.set_pinned(&id, true).await.map(|()| "pinned"),
        "unpin" => environments
            .set_pinned(&id, false)
            .await
            .map(|()| "unpinned"),
        "stop" => environments.stop(&id).await.map(|()| "stopped"),
        "start" => {
            gateway.start_once(&id, "the `envctl gateway` page");
            Ok("starting")
        }
        "down" if form.confirm.as_deref() == Some("yes") => {
            environments.down(&id).await.map(|()| "removed")
        }
        "down" => {
            return Redirect::to(&format!("/confirm/down/{id}")).into_response();
        }
        _ => {
            return message_page(
                StatusCode::NOT_FOUND,
                "no such action",
                "The actions are touch, pin, unpin, stop, start and down.",
            );
        }
    };
    gateway.refresh().await;
    match result {
        Ok(done) => {
            let message = format!("{done} {id}");
            let query: String = url_encode(&message);
            Redirect::to(&format!("/?done={query}")).into_response()
        }
        Err(error) => message_page(
            StatusCode::BAD_GATEWAY,
            &format!("{action} failed"),
            &format!("{action} {}: {}", escape(&id), escape(&error)),
        ),
    }
}

#[derive(Deserialize)]
struct CreateForm {
    csrf: String,
    environment: String,
    reference: String,
    ttl: Option<String>,
}

/// The form that creates an environment at a changeset, as a request for its URL would.
async fn create_form(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if gateway.options.create.is_none() {
        return message_page(
            StatusCode::NOT_FOUND,
            "creation is off",
            "This gateway creates no environments: <code>envctl gateway --create</code> does.",
        );
    }
    if !authorized(&gateway, &headers) {
        return Redirect::to("/login").into_response();
    }
    let body = format!(
        "<h1>Create an environment</h1><form method=\"post\" action=\"/create\">{}\
         <label>environment <input name=\"environment\" required></label> \
         <label>changeset <input name=\"reference\" required minlength=\"7\"></label> \
         <label>TTL <input name=\"ttl\" placeholder=\"8h\"></label> \
         <button name=\"do\" value=\"create\">create</button></form>\
         <p><a href=\"/\">the list of environments</a></p>",
        csrf_field(&gateway)
    );
    html(StatusCode::OK, document("create", None, &body))
}

async fn create(
    State(gateway): State<Arc<Gateway>>,
    Extension(Client(client)): Extension<Client>,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Response {
    if let Some(refused) = refuse_forgery(&gateway, &headers, &form.csrf) {
        return refused;
    }
    if !authorized(&gateway, &headers) {
        return Redirect::to("/login").into_response();
    }
    let Some(settings) = gateway.options.create.clone() else {
        return message_page(StatusCode::NOT_FOUND, "creation is off", "");
    };
    let environment = super::routing::host_label(form.environment.trim());
    let reference = super::routing::host_label(form.reference.trim());
    if reference.len() < super::create::MIN_REF {
        return message_page(
            StatusCode::BAD_REQUEST,
            "too short a changeset",
            "A changeset needs 7 characters at least.",
        );
    }
    let ttl = match form.ttl.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => settings.ttl,
        Some(text) => match humantime::parse_duration(text) {
            Ok(ttl) => ttl,
            Err(error) => {
                return message_page(
                    StatusCode::BAD_REQUEST,
                    "not a TTL",
                    &format!("`{}`: {}", escape(text), escape(&error.to_string())),
                );
            }
        },
    };
    // Asked for by hand: a failure remembered is tried again.
    let key = super::create::key(&environment, &reference);
    gateway.creations.retry(&key);
    let remote = std::net::SocketAddr::new(client, 0);
    // Asked for by hand, as CI still builds the image: it is waited for.
    match super::create::begin(&gateway, &environment, &reference, remote, ttl, true).await {
        Ok(()) => {
            let host = format!("{reference}.{environment}.{}", gateway.options.domain);
            Redirect::to(&gateway.options.url_at(&host)).into_response()
        }
        Err(Some(refused)) => refused,
        Err(None) => message_page(
            StatusCode::NOT_FOUND,
            "no such environment file",
            &format!(
                "There is no environment file <b>{}</b> in the gateway's directory.",
                escape(&environment)
            ),
        ),
    }
}

async fn not_found() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "not found",
        "<a href=\"/\">the list of environments</a>",
    )
}

/// Whether the request may act: always without a token, else with a session this gateway
/// issued at a sign-in.
pub fn authorized(gateway: &Gateway, headers: &HeaderMap) -> bool {
    if gateway.options.token.is_none() {
        return true;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && gateway.sessions.valid(value))
}

/// A POST must carry this process's secret and come from the gateway's own pages.
fn refuse_forgery(gateway: &Gateway, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = match (origin, host) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host)),
        _ => false,
    };
    (cross_site || foreign_origin || !same(&gateway.csrf, csrf)).then(|| {
        message_page(
            StatusCode::FORBIDDEN,
            "refused",
            "This form did not come from this gateway's page (or the gateway restarted): \
             <a href=\"/\">reload the list</a> and try again.",
        )
    })
}

/// Compares secrets in time independent of where they differ.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

fn csrf_field(gateway: &Gateway) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        gateway.csrf
    )
}

pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn message_page(status: StatusCode, title: &str, body_html: &str) -> Response {
    html(
        status,
        document(
            title,
            None,
            &format!("<h1>{}</h1><p>{body_html}</p>", escape(title)),
        ),
    )
}

/// A whole HTML document; `refresh` reloads it after that many seconds.
pub fn document(title: &str, refresh: Option<u32>, body: &str) -> String {
    let refresh = refresh
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}\
         <title>{} - envctl gateway</title><style>{STYLE}</style></head>\n<body>{body}</body></html>\n",
        escape(title)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\
table{border-collapse:collapse;font-size:.9rem}th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;\
text-align:left;vertical-align:top}th{background:#f4f4f4}form{display:inline}button{margin:1px}\
.flag{color:#a00;font-weight:600}.why{color:#777}.danger{color:#a00}.note{background:#eef6ee;padding:.4rem}\
pre.log{margin:0;font-size:.8rem;max-width:60rem;overflow-x:auto;white-space:pre-wrap}";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// What a page shows depends on these.
pub struct View<'a> {
    pub gateway: &'a Gateway,
    pub authorized: bool,
    pub now: DateTime<Utc>,
}

impl View<'_> {
    pub fn list_page(&self, environments: &[RoutedEnvironment], done: Option<&str>) -> String {
        let mut body = String::from("<h1>envctl environments</h1>");
        if let Some(done) = done {
            let _ = write!(body, "<p class=\"note\">{}</p>", escape(done));
        }
        if let Some(error) = self.gateway.list_error() {
            let _ = write!(
                body,
                "<p class=\"flag\">cannot list the environments: {}</p>",
                escape(&error)
            );
        }
        if !self.authorized {
            body.push_str(
                "<p>Actions need this gateway's token: <a href=\"/login\">sign in</a>.</p>",
            );
        }
        if environments.is_empty() {
            body.push_str("<p>No environments. Start one with <code>envctl up</code>.</p>");
        } else {
            body.push_str(
                "<table><thead><tr><th>id</th><th>environment</th><th>refs</th><th>owner</th>\
                 <th>state</th><th>age</th><th>last activity</th><th>idle</th><th>pinned</th>\
                 <th>TTL</th><th>link</th><th>endpoints</th><th>actions</th></tr></thead><tbody>",
            );
            for environment in environments {
                body.push_str(&self.row(environment));
            }
            body.push_str("</tbody></table>");
        }
        let _ = write!(
            body,
            "<p class=\"why\">This page reloads every {REFRESH_SECONDS} s. \
             <a href=\"/metrics\">metrics</a>{}</p>",
            match self.gateway.options.create {
                Some(_) => " <a href=\"/create\">create an environment</a>",
                None => "",
            }
        );
        document("environments", Some(REFRESH_SECONDS), &body)
    }

    fn row(&self, e: &RoutedEnvironment) -> String {
        let id = escape(&e.id);
        let age = e
            .created_at
            .map_or("?".into(), |c| short_duration(self.elapsed(c)));
        let (activity, idle) = match &e.last_activity {
            Some(a) => (
                format!("{} at {}", escape(&a.what), a.at.format("%H:%M:%S UTC")),
                short_duration(self.elapsed(a.at)),
            ),
            None => ("-".into(), "-".into()),
        };
        let ttl = self.ttl(e);
        let link = match &e.entry {
            Ok(entry) => {
                let url = self.gateway.options.url_of(&e.id);
                format!(
                    "<a class=\"link\" href=\"{url}\">{url}</a><br><span class=\"why\">{} {}</span>",
                    escape(&entry.service),
                    entry.port
                )
            }
            Err(why) => format!("<span class=\"why\">no link: {}</span>", escape(why)),
        };
        let endpoints = e
            .endpoints
            .iter()
            .map(|p| escape(p))
            .collect::<Vec<_>>()
            .join("<br>");
        format!(
            "<tr id=\"env-{id}\" data-id=\"{id}\"><td><a href=\"/env/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"state\">{}</td><td>{age}</td><td>{activity}</td><td>{idle}</td>\
             <td class=\"pinned\">{}</td><td>{ttl}</td><td>{link}</td><td>{endpoints}</td>\
             <td>{}</td></tr>",
            escape(&e.environment),
            escape(&e.refs.join(" ")),
            escape(&e.owner),
            self.state(e),
            if e.pinned { "yes" } else { "no" },
            self.actions(e),
        )
    }

    fn ttl(&self, e: &RoutedEnvironment) -> String {
        match e.expires_at {
            Some(at) if at > self.now => format!(
                "expires in {}",
                short_duration((at - self.now).to_std().unwrap_or_default())
            ),
            Some(_) => "expired".into(),
            None => "-".into(),
        }
    }

    /// The page of one environment, `services` as the lifecycle read them (or why it could not).
    pub fn environment_page(
        &self,
        e: &RoutedEnvironment,
        services: &Result<Vec<ServiceView>, String>,
    ) -> String {
        let id = escape(&e.id);
        let mut body = format!("<h1>{id}</h1><table class=\"about\"><tbody>");
        let mut fact = |name: &str, value: String| {
            let _ = write!(body, "<tr><th>{name}</th><td>{value}</td></tr>");
        };
        fact("environment", escape(&e.environment));
        fact("refs", escape(&e.refs.join(" ")));
        fact("state", self.state(e));
        // Created on request: the owner names the client that asked.
        match e.owner.strip_prefix("gateway:") {
            Some(client) => fact(
                "asked for by",
                format!("{} through the gateway", escape(client)),
            ),
            None => fact("owner", escape(&e.owner)),
        }
        fact(
            "age",
            e.created_at
                .map_or("?".into(), |c| short_duration(self.elapsed(c))),
        );
        fact("TTL", self.ttl(e));
        fact("pinned", if e.pinned { "yes" } else { "no" }.into());
        if let Ok(entry) = &e.entry {
            let url = escape(&self.gateway.options.url_of(&e.id));
            fact(
                "link",
                format!(
                    "<a class=\"link\" href=\"{url}\">{url}</a> <span class=\"why\">{} {}</span>",
                    escape(&entry.service),
                    entry.port
                ),
            );
        }
        body.push_str("</tbody></table><h2>services</h2>");
        match services {
            Ok(services) => {
                body.push_str(
                    "<table><thead><tr><th>service</th><th>state</th><th>health</th>\
                     <th>restarts</th><th>ports</th><th>last lines of its log</th></tr></thead>\
                     <tbody>",
                );
                for service in services {
                    body.push_str(&self.service_row(service));
                }
                body.push_str("</tbody></table>");
            }
            Err(why) => {
                let _ = write!(
                    body,
                    "<p class=\"flag\">cannot read its services: {}</p>",
                    escape(why)
                );
            }
        }
        if !self.authorized {
            body.push_str(
                "<p>The services' log lines need this gateway's token: \
                 <a href=\"/login\">sign in</a>.</p>",
            );
        }
        let _ = write!(
            body,
            "<p class=\"why\">This page reloads every {REFRESH_SECONDS} s. \
             <a href=\"/\">the list of environments</a></p>"
        );
        document(&e.id, Some(REFRESH_SECONDS), &body)
    }

    fn service_row(&self, s: &ServiceView) -> String {
        let lines: Vec<String> = s.log.iter().map(|l| escape(l)).collect();
        let log = match (self.authorized, lines.is_empty()) {
            (false, _) => "<span class=\"why\">sign in to see it</span>".to_string(),
            (true, true) => "<span class=\"why\">nothing yet</span>".to_string(),
            (true, false) => format!("<pre class=\"log\">{}</pre>", lines.join("\n")),
        };
        let ports: Vec<String> = s.ports.iter().map(|p| escape(p)).collect();
        format!(
            "<tr class=\"service\" data-service=\"{name}\"><td>{name}</td>\
             <td class=\"state\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{log}</td></tr>",
            escape(&s.state),
            escape(s.health.as_deref().unwrap_or("-")),
            s.restarts,
            ports.join("<br>"),
            name = escape(&s.service),
        )
    }

    fn state(&self, e: &RoutedEnvironment) -> String {
        let mut state = escape(e.state.as_str());
        if self.gateway.wakes.waking(&e.id) {
            state.push_str(" (starting)");
        }
        if let Some(flag) = self.gateway.activity.flag(&e.id) {
            let _ = write!(
                state,
                "<br><span class=\"flag\">error rate: {}</span>",
                escape(&flag.describe())
            );
        }
        if e.stopped_for_errors && !e.running() {
            state.push_str(
                "<br><span class=\"flag\">stopped for its error rate: requests do not wake \
                 it; start it by hand</span>",
            );
        }
        state
    }

    fn actions(&self, e: &RoutedEnvironment) -> String {
        if !self.authorized {
            return "<span class=\"why\">sign in to act</span>".into();
        }
        let button = |action: &str| {
            format!(
                "<form method=\"post\" action=\"/act/{action}/{}\">{}<button name=\"do\" \
                 value=\"{action}\">{action}</button></form>",
                escape(&e.id),
                csrf_field(self.gateway)
            )
        };
        let mut out = button("touch");
        out.push_str(&button(if e.pinned { "unpin" } else { "pin" }));
        out.push_str(&button(if e.running() { "stop" } else { "start" }));
        let _ = write!(
            out,
            "<form method=\"get\" action=\"/confirm/down/{}\"><button class=\"danger\">down\
             </button></form>",
            escape(&e.id)
        );
        out
    }

    fn elapsed(&self, since: DateTime<Utc>) -> Duration {
        (self.now - since).to_std().unwrap_or_default()
    }
}

/// The 404 page of a host the gateway does not know, listing the hosts it knows.
pub fn unknown_host(gateway: &Gateway, host: &str) -> Response {
    let mut body = format!(
        "<h1>No environment at {}</h1><p>This gateway knows:</p><ul>",
        escape(host)
    );
    for environment in gateway.snapshot().iter() {
        let url = gateway.options.url_of(&environment.id);
        let _ = write!(
            body,
            "<li><a href=\"{url}\">{url}</a> ({})</li>",
            escape(&environment.environment)
        );
    }
    let _ = write!(
        body,
        "</ul><p>All of them, with their state: <a href=\"http://{}:{}/\">the list</a>.</p>",
        escape(&gateway.options.domain),
        gateway.options.listen.port()
    );
    html(StatusCode::NOT_FOUND, document("unknown host", None, &body))
}

/// The page a browser sees while its environment starts; it reloads until the environment
/// answers.
pub fn waiting(id: &str) -> Response {
    let body = format!(
        "<h1>Starting {}</h1><p>The environment was stopped; envctl is starting it. This page \
         reloads until it is ready.</p>",
        escape(id)
    );
    let mut response = html(
        StatusCode::SERVICE_UNAVAILABLE,
        document("starting", Some(2), &body),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    response
}

/// The progress page of a creation on request: each service's phase and for how long, reloaded
/// until the environment answers in its place.
pub fn creating(
    environment: &str,
    reference: &str,
    progress: &super::create::Progress,
) -> Response {
    let mut response = html(
        StatusCode::SERVICE_UNAVAILABLE,
        creating_page(environment, reference, progress),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    response
}

/// The document of [`creating`].
pub fn creating_page(
    environment: &str,
    reference: &str,
    progress: &super::create::Progress,
) -> String {
    let mut body = format!(
        "<h1>Creating {} at {}</h1><p>No environment answered here, so envctl is creating one. \
         This page reloads until it is ready, then shows the application.</p><table><thead><tr>\
         <th>service</th><th>state</th><th>for</th></tr></thead><tbody>",
        escape(environment),
        escape(reference)
    );
    for (service, (phase, since)) in progress.services.iter().filter(|(s, _)| !s.is_empty()) {
        let _ = write!(
            body,
            "<tr class=\"service\"><td>{}</td><td class=\"state\">{}</td><td>{}</td></tr>",
            escape(service),
            phase.as_str(),
            short_duration(since.elapsed())
        );
    }
    body.push_str("</tbody></table>");
    if !progress.awaiting.is_empty() {
        let images: Vec<String> = progress
            .awaiting
            .iter()
            .map(|i| format!("<code>{}</code>", escape(i)))
            .collect();
        let _ = write!(
            body,
            "<p class=\"awaiting\">waiting for {} to appear in the registry</p>",
            images.join(" or ")
        );
        if !progress.closest.is_empty() {
            let closest: Vec<String> = progress
                .closest
                .iter()
                .map(|t| format!("<code>{}</code>", escape(t)))
                .collect();
            let _ = write!(
                body,
                "<p class=\"why\">The closest tags there are: {}</p>",
                closest.join(" ")
            );
        }
    }
    if let Some(waiting) = &progress.waiting {
        let _ = write!(
            body,
            "<p class=\"queue\">waiting for capacity: {} (for {})</p>",
            escape(&crate::lifecycle::admission::describe(waiting)),
            short_duration(waiting.waited)
        );
    }
    if let Some(began) = progress.began {
        let _ = write!(
            body,
            "<p class=\"why\">started {} ago</p>",
            short_duration(began.elapsed())
        );
    }
    document("creating", Some(2), &body)
}

/// A REF that names no tag of the environment's services, or several.
pub fn no_such_ref(
    environment: &str,
    reference: &str,
    closest: &[String],
    candidates: &[String],
) -> Response {
    let list = |tags: &[String]| {
        tags.iter()
            .map(|t| format!("<li><code>{}</code></li>", escape(t)))
            .collect::<String>()
    };
    let mut body = match candidates.is_empty() {
        true => format!(
            "<h1>No {} at {}</h1><p>No service of <code>{}</code> has an image tagged \
             <code>{}</code>…, locally or in its registry.</p>",
            escape(environment),
            escape(reference),
            escape(environment),
            escape(reference)
        ),
        false => format!(
            "<h1>{} names several changesets</h1><p><code>{}</code> has several tags \
             starting with <code>{}</code>; give more of it:</p><ul>{}</ul>",
            escape(reference),
            escape(environment),
            escape(reference),
            list(candidates)
        ),
    };
    if !closest.is_empty() {
        let _ = write!(body, "<p>The closest tags:</p><ul>{}</ul>", list(closest));
    }
    html(
        StatusCode::NOT_FOUND,
        document("no such changeset", None, &body),
    )
}

/// A creation that failed: why, with the service's last lines, and how to try again.
pub fn creation_failed(environment: &str, reference: &str, why: &str) -> Response {
    let body = format!(
        "<h1>Creating {} at {} failed</h1><pre>{}</pre><p>This failure is remembered for 10 \
         minutes. <a href=\"?envctl-retry\">Try again now</a></p>",
        escape(environment),
        escape(reference),
        escape(why)
    );
    html(
        StatusCode::BAD_GATEWAY,
        document("creation failed", None, &body),
    )
}

/// An answer of the gateway itself about an environment (not woken, no entry, unreachable).
pub fn problem(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p>{}</p><p><a href=\"/\">the list of environments</a></p>",
        escape(title),
        escape(text)
    );
    html(status, document(title, None, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Options;
    use crate::gateway::fake::Fake;
    use crate::gateway::routing::tests::environment;
    use crate::state::Activity;

    fn gateway(token: Option<&str>) -> Arc<Gateway> {
        let options = Options {
            listen: ([127, 0, 0, 1], 8000).into(),
            domain: "localhost".into(),
            wake_timeout: Duration::from_secs(60),
            guard: None,
            token: token.map(str::to_string),
            max_body: 1 << 20,
            request_timeout: Duration::from_secs(60),
            create: None,
        };
        Gateway::new(options, Arc::new(Fake::default()))
    }

    #[test]
    fn a_row_shows_every_column_with_masked_times() {
        let gateway = gateway(None);
        let mut e = environment("pr_42", "accounting", &["accounting@ea6757a8090d"], 1);
        let now = e.created_at.unwrap() + chrono::Duration::minutes(90);
        e.last_activity = Some(Activity {
            at: now - chrono::Duration::minutes(12),
            what: crate::state::GATEWAY_ACTIVITY.into(),
        });
        e.expires_at = Some(now + chrono::Duration::hours(2));
        e.endpoints = vec!["proxy:8080->127.0.0.1:40001".into()];
        e.pinned = true;
        let view = View {
            gateway: &gateway,
            authorized: true,
            now,
        };
        let row = view.row(&e).replace(&gateway.csrf, "CSRF");
        let cells: Vec<&str> = row.split("<td").skip(1).collect();
        let tags = regex::Regex::new("<[^>]*>").unwrap();
        let text = |cell: &str| {
            let content = &cell[cell.find('>').unwrap() + 1..];
            tags.replace_all(content, "").into_owned()
        };
        let shown: Vec<String> = cells.iter().map(|c| text(c)).collect();
        assert_eq!(
            shown,
            vec![
                "pr_42",
                "accounting",
                "accounting@ea6757a8090d",
                "tester",
                "ready",
                "1h30m",
                "a request through `envctl gateway` at 10:19:00 UTC",
                "12m00s",
                "yes",
                "expires in 2h00m",
                "http://pr-42.localhost:8000/proxy 8080",
                "proxy:8080-&gt;127.0.0.1:40001",
                "touchunpinstopdown",
            ]
        );
        assert!(row.contains("action=\"/act/unpin/pr_42\""), "{row}");
        assert!(row.contains("name=\"csrf\" value=\"CSRF\""), "{row}");
    }

    #[test]
    fn an_environment_without_an_entry_is_listed_without_a_link_saying_why() {
        let gateway = gateway(None);
        let mut e = environment("x", "demo", &[], 1);
        e.entry = Err("2 published ports have an HTTP probe: a:80, b:80".into());
        let view = View {
            gateway: &gateway,
            authorized: true,
            now: Utc::now(),
        };
        let row = view.row(&e);
        assert!(!row.contains("class=\"link\""), "{row}");
        assert!(row.contains("no link: 2 published ports"), "{row}");
    }

    #[test]
    fn without_the_token_the_page_offers_sign_in_and_no_actions() {
        let gateway = gateway(Some("s3cret"));
        let mut headers = HeaderMap::new();
        assert!(!authorized(&gateway, &headers));
        headers.insert(header::COOKIE, "a=b; envctl_gateway=wrong".parse().unwrap());
        assert!(!authorized(&gateway, &headers));
        headers.insert(
            header::COOKIE,
            "a=b; envctl_gateway=s3cret".parse().unwrap(),
        );
        assert!(!authorized(&gateway, &headers), "the token is no session");
        let session = format!("a=b; envctl_gateway={}", gateway.sessions.issue());
        headers.insert(header::COOKIE, session.parse().unwrap());
        assert!(authorized(&gateway, &headers));
        let view = View {
            gateway: &gateway,
            authorized: false,
            now: Utc::now(),
        };
        let page = view.list_page(&[environment("x", "demo", &[], 1)], None);
        assert!(page.contains("href=\"/login\""));
        assert!(!page.contains("/act/"), "{page}");
    }

    #[test]
    fn forms_from_elsewhere_are_refused() {
        let gateway = gateway(None);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "localhost:8000".parse().unwrap());
        assert!(refuse_forgery(&gateway, &headers, "guess").is_some());
        assert!(refuse_forgery(&gateway, &headers, &gateway.csrf.clone()).is_none());
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(refuse_forgery(&gateway, &headers, &gateway.csrf.clone()).is_some());
        headers.insert(header::ORIGIN, "http://localhost:8000".parse().unwrap());
        assert!(refuse_forgery(&gateway, &headers, &gateway.csrf.clone()).is_none());
    }

    fn hostile_service() -> ServiceView {
        ServiceView {
            service: "web<b>".into(),
            state: "running".into(),
            health: Some("healthy".into()),
            restarts: 2,
            ports: vec!["8080->127.0.0.1:40001".into()],
            log: vec![
                "web: ready on port 8080".into(),
                "<script>alert('log')</script> & <img src=x onerror=alert(1)>".into(),
            ],
        }
    }

    #[test]
    fn the_page_of_an_environment_escapes_its_log_lines_and_names_who_asked_for_it() {
        let gateway = gateway(None);
        let mut e = environment("pr<1>", "accounting", &["web@ea6757a8090d"], 1);
        e.owner = "gateway:10.0.0.7".into();
        let now = e.created_at.unwrap() + chrono::Duration::minutes(30);
        e.expires_at = Some(now + chrono::Duration::hours(8));
        let view = View {
            gateway: &gateway,
            authorized: true,
            now,
        };
        let page = view.environment_page(&e, &Ok(vec![hostile_service()]));
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("web<b>"), "{page}");
        assert!(!page.contains("pr<1>"), "{page}");
        assert!(
            page.contains(
                "&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt; &amp; &lt;img src=x \
                 onerror=alert(1)&gt;"
            ),
            "{page}"
        );
        assert!(page.contains("web: ready on port 8080"), "{page}");
        assert!(
            page.contains("<th>asked for by</th><td>10.0.0.7 through the gateway</td>"),
            "{page}"
        );
        assert!(page.contains("expires in 8h00m"), "{page}");
        assert!(
            page.contains("<td class=\"state\">running</td><td>healthy</td><td>2</td>"),
            "{page}"
        );
        assert!(page.contains("8080-&gt;127.0.0.1:40001"), "{page}");
        assert!(page.contains("http-equiv=\"refresh\""), "it reloads itself");
        assert!(!page.contains("<script"), "no JavaScript");
    }

    #[test]
    fn the_page_of_an_environment_shows_no_log_lines_without_the_token() {
        let gateway = gateway(Some("s3cret"));
        let e = environment("x", "demo", &[], 1);
        let view = View {
            gateway: &gateway,
            authorized: false,
            now: Utc::now(),
        };
        let page = view.environment_page(&e, &Ok(vec![hostile_service()]));
        assert!(!page.contains("ready on port"), "{page}");
        assert!(page.contains("href=\"/login\""), "{page}");
        let failed = view.environment_page(&e, &Err("engine <down>".into()));
        assert!(failed.contains("cannot read its services: engine &lt;down&gt;"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
