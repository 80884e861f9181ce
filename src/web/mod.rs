//! The HTTP face of the server: the page, its assets, `/healthz`, `/metrics`, and the WebSocket
//! upgrade. Everything that can refuse a session (origin, identity, limits, placement) runs here
//! before the upgrade, so a refusal is a plain HTTP status and never a half-open socket.

mod assets;
mod closing;
mod provenance;
mod upgrade;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{guard, web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;

use crate::config::Config;
use crate::identity::{self, Asking, Identifier, Mode};
use crate::metrics::Metrics;
use crate::session::Registry;
use crate::tty::Backend;

/// Everything a request handler may need, shared by all workers.
pub struct AppState {
    pub config: Config,
    pub backend: Arc<dyn Backend>,
    pub registry: Arc<Registry>,
    pub identifier: Identifier,
    pub metrics: Arc<Metrics>,
}

/// Binds, prints `listening on http://ADDR` on stdout, and serves until SIGINT/SIGTERM; then
/// closes every session with a reason (1001), hangs the shells up and lets the backend persist.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let addr = SocketAddr::new(state.config.bind_address(), state.config.port);
    let workers = match state.config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let hosts = web::Data::new(provenance::AllowedHosts::from_config(&state.config));
    let proxies = web::Data::new(provenance::TrustedProxies::from_config(&state.config)?);
    let state = web::Data::new(state);
    let server = HttpServer::new({
        let state = state.clone();
        move || {
            App::new()
                .app_data(state.clone())
                .app_data(hosts.clone())
                .app_data(proxies.clone())
                .wrap(actix_web::middleware::from_fn(
                    provenance::allowed_hosts_only,
                ))
                .configure(routes)
        }
    })
    .workers(workers)
    .shutdown_timeout(5)
    // Our own handler closes the sessions first; actix's would wait for them to end by themselves.
    .disable_signals()
    // Keystrokes are tiny writes; Nagle's algorithm would hold each echo back for tens of ms.
    .on_connect(|conn, data| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
            data.insert(closing::ConnSocket(std::os::fd::AsRawFd::as_raw_fd(tcp)));
        }
    })
    .bind(addr)
    .with_context(|| format!("cannot listen on {addr}"))?;
    for bound in server.addrs() {
        println!("listening on http://{bound}");
    }
    log::info!("termpool serving in {} mode", state.config.mode_name());
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(
        state
            .registry
            .clone()
            .reap_idle_forever(state.backend.clone()),
    );
    actix_web::rt::spawn(async move {
        stop_signal().await;
        log::info!("stopping: closing sessions");
        state.registry.shutdown().await;
        state.backend.shutdown().await;
        handle.stop(true).await;
    });
    server.await.context("HTTP server failed")
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot listen for SIGTERM/SIGINT; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    let page_route = || {
        web::route()
            .guard(guard::Any(guard::Get()).or(guard::Head()))
            .to(page)
    };
    cfg.route("/", page_route())
        .route("/container-terminal", page_route())
        .route("/container-terminal/", page_route())
        .route("/ws", web::get().to(upgrade::websocket))
        .route("/container-terminal/ws", web::get().to(upgrade::websocket))
        .route("/assets/{path:.*}", web::get().to(asset))
        .route("/login", web::post().to(login))
        .route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics));
}

/// Who is asking, in the configured identity mode.
pub(crate) fn identify(req: &HttpRequest, state: &AppState) -> Option<String> {
    let cookie = req.cookie(identity::COOKIE_NAME);
    let header = match &state.identifier.mode {
        Mode::Header { header, .. } => req.headers().get(header.as_str()),
        _ => None,
    };
    state.identifier.identify(&Asking {
        cookie: cookie.as_ref().map(|c| c.value()),
        peer: req.peer_addr().map(|a| a.ip()),
        header: header.and_then(|h| h.to_str().ok()),
    })
}

/// The client address that a new identity is counted against: only anonymous identities (cookie
/// mode) cost nothing to make; tokens and an auth proxy's users are a fixed set.
pub(crate) fn newcomer_address(req: &HttpRequest, state: &AppState) -> Option<IpAddr> {
    match state.identifier.mode {
        Mode::Cookie => provenance::client_address(req),
        _ => None,
    }
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The terminal page. In cookie mode it gives the browser its anonymous identity when it has no
/// valid one; in token mode it asks for a token first.
async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let elsewhere = provenance::started_elsewhere(&req);
    let back = landing(req.path());
    if let Mode::Token(_) = &state.identifier.mode {
        let query = web::Query::<TokenQuery>::from_query(req.query_string());
        if let Some(token) = query.ok().and_then(|q| q.0.token) {
            // Another site's link must not log this browser in as whoever that site chose.
            if elsewhere {
                return confirm_login(&token, back);
            }
            // The token leaves the URL (and the history) at once: a cookie carries the user.
            return login_with(&req, &state, &token, back);
        }
    }
    let identified = identify(&req, &state).is_some();
    match &state.identifier.mode {
        // The browser may well hold an identity that this navigation left behind: ask again from
        // this site rather than give it a new identity over its old one.
        Mode::Cookie | Mode::Token(_) if !identified && elsewhere => reload_from_here(),
        Mode::Token(_) if !identified => login_form(StatusCode::OK, "", back),
        Mode::Cookie if !identified => {
            let (_, value) = state.identifier.signer.issue();
            serve_page(Some(cookie_header(&req, &value)))
        }
        _ => serve_page(None),
    }
}

/// A page that loads its own URL again, now as a navigation of this site.
fn reload_from_here() -> HttpResponse {
    little_page(
        StatusCode::OK,
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=0>\
         <title>termpool</title>"
            .to_owned(),
    )
}

/// Token mode, a token in another site's link: the user confirms with a same-origin POST.
fn confirm_login(token: &str, back: &'static str) -> HttpResponse {
    little_page(
        StatusCode::OK,
        format!(
            "<!doctype html><meta charset=utf-8><title>termpool: log in</title>\
             <form method=post action=/login><p>A link from another site asks to open the \
             terminal with an access token.</p><input type=hidden name=token value=\"{}\">\
             {}<button>Open terminal</button></form>",
            escape_html(token),
            next_field(back)
        ),
    )
}

/// The page a login returns to: one of this server's own pages, named by a fixed list. Never a
/// URL taken from the request, or a login link could send the browser to another site.
fn landing(path: &str) -> &'static str {
    match path {
        "/container-terminal" | "/container-terminal/" => "/container-terminal",
        _ => "/",
    }
}

/// The login form's field that says where to return (a value of `landing`: no escaping needed).
fn next_field(back: &'static str) -> String {
    format!("<input type=hidden name=next value=\"{back}\">")
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn serve_page(set_cookie: Option<String>) -> HttpResponse {
    let Some(index) = assets::get("index.html") else {
        return HttpResponse::InternalServerError().body("the page was not built into this binary");
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type(index.content_type)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if let Some(v) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.insert_header((header::SET_COOKIE, v));
    }
    response.body(index.bytes)
}

fn cookie_header(req: &HttpRequest, value: &str) -> String {
    identity::set_cookie_header(value, provenance::is_https(req))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    /// The page the form was shown on.
    #[serde(default)]
    next: String,
}

/// `POST /login` (token mode): the login form's token for a cookie.
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    // A form on another site must not log this browser in as whoever that site chose.
    if !provenance::origin_allowed(&req, &state.config) {
        log::info!("login refused: cross-origin form");
        return HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .body("cross-origin login refused");
    }
    login_with(&req, &state, &form.token, landing(&form.next))
}

fn login_with(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
    back: &'static str,
) -> HttpResponse {
    let Some(value) = state.identifier.login(token) else {
        log::info!("login refused: unknown token");
        return login_form(StatusCode::UNAUTHORIZED, "That token is not valid.", back);
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, back))
        .insert_header((header::SET_COOKIE, cookie_header(req, &value)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

/// A plain form, no script: the token goes in a POST body, never in a URL.
fn login_form(status: StatusCode, notice: &'static str, back: &'static str) -> HttpResponse {
    little_page(
        status,
        format!(
            "<!doctype html><meta charset=utf-8><title>termpool: log in</title>\
             <form method=post action=/login><p>{notice}</p>{}\
             <label>Access token <input name=token type=password \
             autocomplete=current-password required autofocus></label> \
             <button>Open terminal</button></form>",
            next_field(back)
        ),
    )
}

/// A page of our own markup, without script, never cached, never framed.
fn little_page(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        ))
        .body(body)
}

async fn asset(path: web::Path<String>) -> HttpResponse {
    match assets::get(&format!("assets/{path}")) {
        Some(a) => HttpResponse::Ok()
            .content_type(a.content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(a.bytes),
        None => HttpResponse::NotFound().body("no such asset"),
    }
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let sessions = state.metrics.sessions_open.load(Ordering::Relaxed);
    let mode = state.backend.mode();
    match state.backend.health().await {
        Ok(backend) => HttpResponse::Ok().json(serde_json::json!({
            "status": "ok", "mode": mode, "sessions_open": sessions, "backend": backend,
        })),
        Err(reason) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "unavailable", "mode": mode, "sessions_open": sessions, "reason": reason,
        })),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
