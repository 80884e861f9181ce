//! The HTTP face of the server: its shared state, the listener and the route table; the handlers
//! live in the child modules.

mod admin;
mod api;
mod assets;
mod blocked;
mod closing;
mod pages;
mod provenance;
mod status;
mod upgrade;
mod upload;

use std::sync::Arc;

use actix_web::{guard, web, App, HttpServer};
use anyhow::Context;

use crate::blocks::{Blocklist, SharedStore};
use crate::config::ServerOptions;
use crate::identity::Identifier;
use crate::metrics::Metrics;
use crate::session::Registry;
use crate::tty::Backend;
use crate::workspace::Workspace;

/// Everything a request handler may need, shared by all workers.
pub struct AppState {
    pub options: ServerOptions,
    pub backend: Arc<dyn Backend>,
    pub registry: Arc<Registry>,
    pub identifier: Identifier,
    pub metrics: Arc<Metrics>,
    pub workspace: Workspace,
    /// The operator's blocks (kept in `store` when there is one).
    pub blocks: Arc<Blocklist>,
    /// The store's web-side connection (`DATA_DIR`'s file, or the Swarm's configs); `None`:
    /// nothing outlives the process.
    pub store: Option<SharedStore>,
}

/// Binds, prints `listening on http://ADDR` on stdout, and serves until SIGINT/SIGTERM; then
/// closes every session with a reason (1001), hangs the shells up and lets the backend persist.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let addr = state.options.bind;
    let hosts = web::Data::new(provenance::AllowedHosts::new(&state.options));
    let proxies = web::Data::new(state.options.trusted_proxies.clone());
    let base = state.options.base_path.clone();
    let state = web::Data::new(state);
    let server = HttpServer::new({
        let state = state.clone();
        move || {
            App::new()
                .app_data(state.clone())
                .app_data(hosts.clone())
                .app_data(proxies.clone())
                .wrap(actix_web::middleware::from_fn(blocked::refuse_blocked))
                .wrap(actix_web::middleware::from_fn(
                    provenance::allowed_hosts_only,
                ))
                .configure(|cfg| routes(cfg, &base))
        }
    })
    .workers(state.options.workers)
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
    let stop = StopSignals::install();
    for bound in server.addrs() {
        println!("listening on http://{bound}");
    }
    log::info!("termpool serving in {} mode", state.options.mode_name);
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(
        state
            .registry
            .clone()
            .reap_idle_forever(state.backend.clone()),
    );
    actix_web::rt::spawn(reload_on_hangup(state.clone()));
    actix_web::rt::spawn(async move {
        stop.recv().await;
        log::info!("stopping: closing sessions");
        state.registry.shutdown().await;
        state.backend.shutdown().await;
        handle.stop(true).await;
    });
    server.await.context("HTTP server failed")
}

/// SIGTERM and SIGINT, listened for from before the server says it listens: a stop asked for
/// right after start is a clean stop too, not the default action's kill.
struct StopSignals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl StopSignals {
    fn install() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => StopSignals(Some((term, int))),
            _ => {
                log::error!("cannot listen for SIGTERM/SIGINT; stop the server with SIGKILL");
                StopSignals(None)
            }
        }
    }

    async fn recv(self) {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// SIGHUP reads the token file again (a changed file is also read again at its next use).
async fn reload_on_hangup(state: web::Data<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        log::error!("cannot listen for SIGHUP");
        return;
    };
    while hangups.recv().await.is_some() {
        log::info!("SIGHUP: reading the token file again");
        state.identifier.reload();
    }
}

/// Every route, under `base` (`/` or `/prefix/`); the prefix without its slash redirects to it.
fn routes(cfg: &mut web::ServiceConfig, base: &str) {
    let scope = base.trim_end_matches('/');
    if !scope.is_empty() {
        let to = base.to_owned();
        cfg.route(
            scope,
            web::get().to(move || {
                let to = to.clone();
                async move {
                    actix_web::HttpResponse::PermanentRedirect()
                        .insert_header((actix_web::http::header::LOCATION, to))
                        .finish()
                }
            }),
        );
    }
    cfg.service(web::scope(scope).configure(base_routes));
}

fn base_routes(cfg: &mut web::ServiceConfig) {
    let page_route = || {
        web::route()
            .guard(guard::Any(guard::Get()).or(guard::Head()))
            .to(pages::page)
    };
    cfg.route("/", page_route())
        .route("/container-terminal", page_route())
        .route("/container-terminal/", page_route())
        .route("/ws", web::get().to(upgrade::websocket))
        .route("/container-terminal/ws", web::get().to(upgrade::websocket))
        .route("/assets/{path:.*}", web::get().to(pages::asset))
        .route("/login", web::post().to(pages::login))
        .route("/healthz", web::get().to(status::healthz))
        .route("/metrics", web::get().to(status::metrics))
        .route("/api/whoami", web::get().to(api::whoami))
        .route("/api/sessions", web::get().to(api::sessions))
        .route("/api/sessions/{id}", web::delete().to(api::end_session))
        .route("/api/access-key", web::post().to(api::create_key))
        .route("/api/access-key/redeem", web::post().to(api::redeem_key))
        .route("/api/upload", web::post().to(upload::upload))
        .configure(admin::routes);
}
