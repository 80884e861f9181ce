//! The HTTP face of the server: the page, its assets, `/healthz`, `/metrics`, and the WebSocket
//! upgrade. Everything that can refuse a session (origin, identity, limits, placement) runs here
//! before the upgrade, so a refusal is a plain HTTP status and never a half-open socket.

mod assets;
mod upgrade;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{guard, web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;

use crate::config::Config;
use crate::identity::{self, CookieSigner};
use crate::metrics::Metrics;
use crate::session::Registry;
use crate::tty::Backend;

/// Everything a request handler may need, shared by all workers.
pub struct AppState {
    pub config: Config,
    pub backend: Arc<dyn Backend>,
    pub registry: Arc<Registry>,
    pub signer: CookieSigner,
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
    let state = web::Data::new(state);
    let server = HttpServer::new({
        let state = state.clone();
        move || App::new().app_data(state.clone()).configure(routes)
    })
    .workers(workers)
    .shutdown_timeout(5)
    // Our own handler closes the sessions first; actix's would wait for them to end by themselves.
    .disable_signals()
    // Keystrokes are tiny writes; Nagle's algorithm would hold each echo back for tens of ms.
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
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
        .route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics));
}

/// The terminal page. Gives the browser its anonymous identity cookie when it has no valid one.
async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
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
    let has_identity = req
        .cookie(identity::COOKIE_NAME)
        .is_some_and(|c| state.signer.verify(c.value()).is_some());
    if !has_identity {
        let (_, value) = state.signer.issue();
        let secure = req.connection_info().scheme() == "https";
        if let Ok(v) = HeaderValue::from_str(&identity::set_cookie_header(&value, secure)) {
            response.insert_header((header::SET_COOKIE, v));
        }
    }
    response.body(index.bytes)
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
