//! `GET /ws`: checks origin, identity, limits and placement, then re-attaches to the session the
//! client names or spawns a new shell, and only then upgrades the connection and hands it to the
//! relay. Anything refused here is a plain HTTP status, never a half-open socket.

mod refused;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::Payload;
use actix_web::http::header::{HeaderValue, SEC_WEBSOCKET_EXTENSIONS};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::closing::{ClosingBody, ConnSocket};
use super::{provenance, AppState};
use crate::identity::Mode;
use crate::protocol::{ErrorCode, Ready, ServerFrame, TermSize, PROTOCOL_VERSION, SIZE_RANGE};
use crate::relay::{self, RelayConfig};
use crate::session::{Attached, LiveSession, Requester};
use crate::wsdeflate::{self, DeflatingBody, InflatingStream};
use refused::{admission_refusal, backend_refusal, refusal_response, Refused};

/// The query of `/ws`. Strings, so that a bad number gets our message rather than serde's.
#[derive(Deserialize)]
struct WsQuery {
    cols: Option<String>,
    rows: Option<String>,
    session: Option<String>,
}

/// What the `/ws` query asks for, checked.
struct WsRequest {
    size: TermSize,
    session: Option<String>,
}

pub(super) async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let limit = state.options.max_frame_bytes;
    let (body, deflate) = match compression(&req, body, limit).await {
        Ok(parts) => parts,
        Err(e) => {
            let refusal = Refused::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            return refusal_response(&req, &state, refusal);
        }
    };
    // The handshake is checked first so that no shell is spawned for a request that can't upgrade.
    let (mut response, ws, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => {
            // Browsers hide a refused upgrade's status from WebSocket code, so the page asks the
            // same URL over plain HTTP to learn why: it gets the refusal its upgrade got.
            let refusal = preflight(&req, &state)
                .err()
                .unwrap_or_else(|| Refused::new(StatusCode::BAD_REQUEST, e.to_string()));
            return refusal_response(&req, &state, refusal);
        }
    };
    let (session, attached, greeting) = match open(&req, &state).await {
        Ok(opened) => opened,
        Err(r) => return refusal_response(&req, &state, r),
    };
    let stream = stream
        .max_frame_size(limit)
        .aggregate_continuations()
        .max_continuation_size(limit);
    let cfg = RelayConfig {
        ping_interval: state.options.ping_interval,
        metrics: state.metrics.clone(),
        busy_poll: state.options.busy_poll,
    };
    let socket = req.conn_data::<ConnSocket>().copied();
    let mut reading_done = None;
    if let Some(answer) = &deflate {
        if let Ok(value) = HeaderValue::from_str(answer) {
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_EXTENSIONS, value);
        }
    }
    let response = response.map_body(|_, body| {
        let body = match deflate {
            Some(_) => DeflatingBody::new(body).boxed(),
            None => body,
        };
        let (body, done) = ClosingBody::new(body, socket);
        reading_done = Some(done);
        body
    });
    // actix-ws's stream is not Send: the relay stays on this worker's local executor.
    actix_web::rt::spawn(async move {
        relay::run(ws, stream, session, attached, greeting, cfg).await;
        drop(reading_done);
    });
    response.map_into_boxed_body()
}

/// The client's payload, inflating if it offered permessage-deflate in a form we accept, and
/// then the `Sec-WebSocket-Extensions` answer.
async fn compression(
    req: &HttpRequest,
    body: web::Payload,
    limit: usize,
) -> Result<(web::Payload, Option<String>), actix_web::Error> {
    let offers = req.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
    let Some(answer) = wsdeflate::negotiate(offers.filter_map(|v| v.to_str().ok())) else {
        return Ok((body, None));
    };
    let inflating = InflatingStream::new(body.into_inner(), limit);
    let mut payload: Payload = Payload::Stream {
        payload: Box::pin(inflating),
    };
    // Never fails: it only takes the payload.
    let body = web::Payload::from_request(req, &mut payload).await?;
    Ok((body, Some(answer)))
}

/// Checks the request, then re-attaches to the session it names or starts a new one. Returns the
/// session, its attachment and the text frames to greet the client with.
async fn open(
    req: &HttpRequest,
    state: &AppState,
) -> Result<(Arc<LiveSession>, Attached, Vec<String>), Refused> {
    let (identity, WsRequest { size, session }) = checked(req, state)?;
    let mut notice = None;
    if let Some(id) = session {
        if let Some(session) = state.registry.find(&id, &identity) {
            if let Some(attached) = session.attach(size) {
                // The re-attaching client's size wins.
                let _ = session.resize(size).await;
                let ready = ready_frame(state, &session, size, true);
                return Ok((session, attached, vec![ready]));
            }
        }
        let message = "that session has ended or is not yours: this is a new one";
        let code = ErrorCode::SessionNotFound;
        notice = Some(ServerFrame::error(code, message).to_json());
    }
    let started = Instant::now();
    let session = start_session(state, &identity, &requester(req, state), size).await?;
    state.metrics.observe_open(started.elapsed());
    let attached = session
        .attach(size)
        .ok_or_else(|| Refused::new(StatusCode::SERVICE_UNAVAILABLE, "the shell ended at once"))?;
    let mut greeting = vec![ready_frame(state, &session, size, false)];
    greeting.extend(notice);
    Ok((session, attached, greeting))
}

/// The checks that need no shell: origin, identity, the query.
fn checked(req: &HttpRequest, state: &AppState) -> Result<(String, WsRequest), Refused> {
    check_origin(req, state)?;
    let identity = identify(req, state)?;
    Ok((identity, parse_query(req)?))
}

/// What an upgrade of this request would be refused for, short of starting a shell.
fn preflight(req: &HttpRequest, state: &AppState) -> Result<(), Refused> {
    let (identity, query) = checked(req, state)?;
    let resumes = query
        .session
        .is_some_and(|id| state.registry.find(&id, &identity).is_some());
    if !resumes {
        state
            .registry
            .check_admission(&identity, &requester(req, state))
            .map_err(admission_refusal)?;
    }
    Ok(())
}

async fn start_session(
    state: &AppState,
    identity: &str,
    requester: &Requester,
    size: TermSize,
) -> Result<Arc<LiveSession>, Refused> {
    let mut slot = state
        .registry
        .admit_evicting(identity, requester)
        .await
        .map_err(admission_refusal)?;
    let registry = state.registry.clone();
    let placement = state
        .backend
        .place(identity, &move |account| registry.account_is_live(account))
        .await
        .map_err(backend_refusal)?;
    slot.bind(&placement);
    let spawned = state
        .backend
        .spawn(&placement, size)
        .await
        .map_err(backend_refusal)?;
    Ok(state
        .registry
        .start(slot, placement, spawned, size, requester.address))
}

fn ready_frame(state: &AppState, session: &LiveSession, size: TermSize, resumed: bool) -> String {
    ServerFrame::Ready(Ready {
        protocol: PROTOCOL_VERSION,
        session: session.id.as_str().into(),
        user: session.placement.user.as_str().into(),
        container: session.placement.container.as_deref().map(Into::into),
        mode: state.backend.mode().into(),
        cols: size.cols,
        rows: size.rows,
        resumed,
    })
    .to_json()
}

/// Cross-site WebSocket hijacking guard: a browser always sends `Origin`; it must be this server
/// or a configured origin. Non-browser clients send none.
fn check_origin(req: &HttpRequest, state: &AppState) -> Result<(), Refused> {
    if provenance::origin_allowed(req, &state.options) {
        return Ok(());
    }
    Err(Refused::new(
        StatusCode::FORBIDDEN,
        "cross-origin WebSocket refused: the Origin is not this server nor an allowed origin",
    ))
}

fn identify(req: &HttpRequest, state: &AppState) -> Result<String, Refused> {
    provenance::identify_checked(req, &state.identifier).map_err(|e| {
        let status = match e.is_ambiguous() {
            true => StatusCode::BAD_REQUEST,
            false => StatusCode::UNAUTHORIZED,
        };
        Refused::new(status, e.to_string())
    })
}

/// Who asks, for admission: the client's address, and whether its identity cost nothing to make
/// (cookie mode; tokens and an auth proxy's users are a fixed set).
fn requester(req: &HttpRequest, state: &AppState) -> Requester {
    Requester {
        address: provenance::client_address(req),
        anonymous: matches!(state.identifier.mode, Mode::Cookie),
    }
}

fn parse_query(req: &HttpRequest) -> Result<WsRequest, Refused> {
    parse_query_string(req.query_string())
}

fn parse_query_string(query: &str) -> Result<WsRequest, Refused> {
    let query = web::Query::<WsQuery>::from_query(query)
        .map_err(|e| Refused::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let default = TermSize::default();
    let dim = |value: &Option<String>, name: &str, default: u16| match value {
        None => Ok(default),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|n| SIZE_RANGE.contains(n))
            .ok_or_else(|| {
                Refused::new(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be a whole number within 1..=1000"),
                )
            }),
    };
    let size = TermSize {
        cols: dim(&query.cols, "cols", default.cols)?,
        rows: dim(&query.rows, "rows", default.rows)?,
    };
    // Any string may name a session: only a live one of this very user is ever found.
    let session = query.session.clone().filter(|s| !s.is_empty());
    Ok(WsRequest { size, session })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_and_session_ids_from_the_query() {
        let q = parse_query_string("cols=120&rows=40&session=abc")
            .ok()
            .unwrap();
        assert_eq!((q.size.cols, q.size.rows), (120, 40));
        assert_eq!(q.session.as_deref(), Some("abc"));
        let q = parse_query_string("").ok().unwrap();
        assert_eq!(q.size, TermSize::default());
        for bad in [
            "cols=0",
            "rows=1001",
            "cols=-1",
            "cols=1e3",
            "cols=%FF",
            "rows=40&rows=41x",
        ] {
            assert_eq!(
                parse_query_string(bad).err().map(|r| r.status),
                Some(StatusCode::BAD_REQUEST),
                "{bad}"
            );
        }
    }

    proptest! {
        /// Any query: a checked size and a session id, or a 400, and never a panic.
        #[test]
        fn any_query_is_checked(query in "[ -~]{0,120}") {
            match parse_query_string(&query) {
                Ok(q) => prop_assert!(SIZE_RANGE.contains(&q.size.cols) && SIZE_RANGE.contains(&q.size.rows)),
                Err(r) => prop_assert_eq!(r.status, StatusCode::BAD_REQUEST),
            }
        }
    }
}
