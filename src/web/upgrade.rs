//! `GET /ws`: checks origin, identity, limits and placement, spawns the shell, and only then
//! upgrades the connection and hands it to the relay.

use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::AppState;
use crate::identity;
use crate::protocol::{ServerFrame, TermSize, PROTOCOL_VERSION, SIZE_RANGE};
use crate::relay::{self, RelayConfig};
use crate::tty::TtyError;

/// The query of `/ws`. Strings, so that a bad number gets our message rather than serde's.
#[derive(Deserialize)]
struct WsQuery {
    cols: Option<String>,
    rows: Option<String>,
}

/// An upgrade refused before the WebSocket opened.
struct Refused {
    status: StatusCode,
    message: String,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

pub(super) async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    // The handshake is checked first so that no shell is spawned for a request that can't upgrade.
    let (response, ws, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => return refused(&state, refuse(StatusCode::BAD_REQUEST, e.to_string())),
    };
    let prepared = match prepare(&req, &state).await {
        Ok(prepared) => prepared,
        Err(r) => return refused(&state, r),
    };
    let Prepared {
        slot,
        spawned,
        ready,
    } = prepared;
    let limit = state.config.max_frame_bytes;
    let stream = stream
        .max_frame_size(limit)
        .aggregate_continuations()
        .max_continuation_size(limit);
    let cfg = RelayConfig {
        ping_interval: state.config.ping_interval(),
    };
    let metrics = state.metrics.clone();
    metrics.sessions_open.fetch_add(1, Ordering::Relaxed);
    metrics.sessions_total.fetch_add(1, Ordering::Relaxed);
    // actix-ws's stream is not Send: the relay stays on this worker's local executor.
    actix_web::rt::spawn(async move {
        relay::run(ws, stream, spawned.tty, spawned.output, ready, cfg, metrics.clone()).await;
        metrics.sessions_open.fetch_sub(1, Ordering::Relaxed);
        drop(slot);
    });
    response
}

fn refused(state: &AppState, r: Refused) -> HttpResponse {
    state.metrics.count_refusal(r.status.as_u16());
    log::info!("WebSocket upgrade refused ({}): {}", r.status, r.message);
    HttpResponse::build(r.status)
        .content_type("text/plain; charset=utf-8")
        .body(r.message)
}

struct Prepared {
    slot: crate::session::SessionSlot,
    spawned: crate::tty::Spawned,
    ready: String,
}

async fn prepare(req: &HttpRequest, state: &AppState) -> Result<Prepared, Refused> {
    check_origin(req, state)?;
    let identity = identify(req, state)?;
    let size = requested_size(req)?;
    let mut slot = state
        .registry
        .admit(&identity)
        .map_err(|e| refuse(StatusCode::TOO_MANY_REQUESTS, e.to_string()))?;
    let registry = state.registry.clone();
    let placement = state
        .backend
        .place(&identity, &move |account| registry.account_is_live(account))
        .await
        .map_err(backend_refusal)?;
    slot.bind_account(&placement.user);
    let spawned = state
        .backend
        .spawn(&placement, size)
        .await
        .map_err(backend_refusal)?;
    let session = uuid::Uuid::new_v4().to_string();
    let ready = ServerFrame::Ready {
        protocol: PROTOCOL_VERSION,
        session: &session,
        user: &placement.user,
        container: placement.container.as_deref(),
        mode: state.backend.mode(),
        cols: size.cols,
        rows: size.rows,
        resumed: false,
    }
    .to_json();
    Ok(Prepared {
        slot,
        spawned,
        ready,
    })
}

fn backend_refusal(e: TtyError) -> Refused {
    match e {
        TtyError::Unavailable(m) => refuse(StatusCode::SERVICE_UNAVAILABLE, m),
        TtyError::Refused(m) => refuse(StatusCode::TOO_MANY_REQUESTS, m),
        other => {
            log::error!("could not start a session: {other}");
            refuse(StatusCode::SERVICE_UNAVAILABLE, format!("could not start a terminal: {other}"))
        }
    }
}

/// Cross-site WebSocket hijacking guard: a browser always sends `Origin`; it must be this server
/// (either scheme, same `Host`) or a configured origin. Non-browser clients send none.
fn check_origin(req: &HttpRequest, state: &AppState) -> Result<(), Refused> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let own = !host.is_empty()
        && (origin == format!("http://{host}") || origin == format!("https://{host}"));
    if own || state.config.extra_origins().any(|o| o == origin) {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::FORBIDDEN,
            "cross-origin WebSocket refused: the Origin is not this server nor an allowed origin",
        ))
    }
}

fn identify(req: &HttpRequest, state: &AppState) -> Result<String, Refused> {
    req.cookie(identity::COOKIE_NAME)
        .and_then(|c| state.signer.verify(c.value()))
        .map(|id| identity::cookie_identity(&id))
        .ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "no valid identity cookie: load the terminal page first",
            )
        })
}

fn requested_size(req: &HttpRequest) -> Result<TermSize, Refused> {
    let query = web::Query::<WsQuery>::from_query(req.query_string())
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let default = TermSize::default();
    let dim = |value: &Option<String>, name: &str, default: u16| match value {
        None => Ok(default),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|n| SIZE_RANGE.contains(n))
            .ok_or_else(|| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be a whole number within 1..=1000"),
                )
            }),
    };
    Ok(TermSize {
        cols: dim(&query.cols, "cols", default.cols)?,
        rows: dim(&query.rows, "rows", default.rows)?,
    })
}
