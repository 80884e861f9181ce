//! The admin API (`/admin/...`), on only with `ADMIN_TOKEN_FILE`: list users and their sessions,
//! end a user's sessions and processes, block and unblock identities and addresses. Answers only
//! `ADMIN_ALLOWED_ADDRESSES`, and only with the bearer token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{provenance, AppState};
use crate::audit;
use crate::blocks::BlockError;
use crate::pool::store::BlockKind;
use crate::session::LiveSession;
use crate::tty::{AccountInfo, Placement};

/// Largest JSON body the API reads.
const MAX_BODY: usize = 16 * 1024;
/// How long ending a user waits for its hung-up sessions to end before the backend's reap.
const END_WAIT: Duration = Duration::from_secs(5);

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(actix_web::middleware::from_fn(authorized_only))
            .route("/users", web::get().to(users))
            .route("/users/{user}/end", web::post().to(end_user))
            .route("/blocks", web::get().to(blocks))
            .route("/blocks", web::post().to(add_block))
            .route("/blocks/{kind}/{value:.*}", web::delete().to(remove_block)),
    );
}

/// A plain-text answer.
fn plain(status: StatusCode, text: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(text.into())
}

/// Refuses a request from an address not allowed (403, token or not) or without the token (401).
async fn authorized_only(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let admin = state.as_ref().and_then(|s| s.options.admin.clone());
    let client = provenance::client_address(req.request());
    let refusal = match admin {
        None => Some((StatusCode::NOT_FOUND, "admin_off", "the admin API is off")),
        Some(a) if !client.is_some_and(|ip| a.allowed.contains(ip)) => Some((
            StatusCode::FORBIDDEN,
            "admin_address",
            "the admin API does not answer this address (ADMIN_ALLOWED_ADDRESSES)",
        )),
        Some(a) if !token_matches(req.request(), &a.token) => Some((
            StatusCode::UNAUTHORIZED,
            "admin_token",
            "the admin API needs `Authorization: Bearer <the token of ADMIN_TOKEN_FILE>`",
        )),
        Some(_) => None,
    };
    let Some((status, reason, text)) = refusal else {
        return next.call(req).await;
    };
    if let Some(state) = &state {
        state.metrics.count_refusal_reason(reason);
    }
    audit::Line::new("refused")
        .field("status", status.as_u16())
        .field("reason", reason)
        .field("path", req.path())
        .client(client)
        .emit();
    let mut response = plain(status, text);
    if status == StatusCode::UNAUTHORIZED {
        let bearer = header::HeaderValue::from_static("Bearer");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, bearer);
    }
    Ok(req.into_response(response))
}

/// Whether the request's bearer token is `token`, compared in constant time (of their hashes, so
/// that not even the length is compared early).
fn token_matches(req: &HttpRequest, token: &str) -> bool {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let given = Sha256::digest(given.trim().as_bytes());
    let wanted = Sha256::digest(token.as_bytes());
    bool::from(given.ct_eq(&wanted))
}

/// An operator's action, for the audit trail.
fn audit_action(req: &HttpRequest, action: &str) -> audit::Line {
    audit::Line::new("admin")
        .field("action", action)
        .client(provenance::client_address(req))
}

/// A user as `GET /admin/users` lists it.
#[derive(serde::Serialize)]
struct UserView {
    user: String,
    identity_hash: String,
    uid: Option<u32>,
    container: Option<String>,
    last_activity: Option<i64>,
    live_sessions: usize,
    sessions: Vec<SessionView>,
}

#[derive(serde::Serialize)]
struct SessionView {
    id: String,
    client: Option<String>,
}

/// `GET /admin/users`: the backend's accounts and every identity with a live session.
async fn users(state: web::Data<AppState>) -> HttpResponse {
    let accounts = match state.backend.accounts().await {
        Ok(a) => a,
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let mut views: BTreeMap<(String, String), UserView> = accounts
        .into_iter()
        .map(|a| ((a.user.clone(), a.identity_hash.clone()), account_view(a)))
        .collect();
    for s in state.registry.live_sessions() {
        let key = (s.placement.user.clone(), s.identity_hash());
        let view = views
            .entry(key)
            .or_insert_with_key(|(user, hash)| UserView {
                user: user.clone(),
                identity_hash: hash.clone(),
                uid: None,
                container: s.placement.container.clone(),
                last_activity: None,
                live_sessions: 0,
                sessions: Vec::new(),
            });
        view.live_sessions += 1;
        view.sessions.push(SessionView {
            id: s.id.clone(),
            client: s.client.map(|ip| ip.to_string()),
        });
    }
    let users: Vec<UserView> = views.into_values().collect();
    HttpResponse::Ok().json(serde_json::json!({ "users": users }))
}

fn account_view(a: AccountInfo) -> UserView {
    UserView {
        user: a.user,
        identity_hash: a.identity_hash,
        uid: Some(a.uid),
        container: a.container,
        last_activity: Some(a.last_activity),
        live_sessions: 0,
        sessions: Vec::new(),
    }
}

/// `POST /admin/users/{user}/end`: hangs up the sessions of the account (or of the identity,
/// when given its 64-digit hash), then ends the processes the account still runs.
async fn end_user(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let who = path.into_inner();
    let by_hash = who.len() == 64 && who.bytes().all(|b| b.is_ascii_hexdigit());
    let sessions: Vec<Arc<LiveSession>> = match by_hash {
        true => sessions_of_identity(&state, &who.to_ascii_lowercase()),
        false => state.registry.sessions_of_account(&who),
    };
    let mut placement = sessions.first().map(|s| s.placement.clone());
    if placement.is_none() {
        placement = stored_placement(&state, &who, by_hash).await;
    }
    let Some(placement) = placement else {
        return plain(StatusCode::NOT_FOUND, format!("no user {who:?} is known"));
    };
    hang_up(&sessions).await;
    let reaped = reap(&state, &placement).await;
    audit_action(&req, "end_user")
        .field("account", &placement.user)
        .field("sessions_ended", sessions.len())
        .field("processes_ended", reaped)
        .emit();
    HttpResponse::Ok().json(serde_json::json!({
        "user": placement.user,
        "sessions_ended": sessions.len(),
        "processes_ended": reaped,
    }))
}

fn sessions_of_identity(state: &AppState, hash: &str) -> Vec<Arc<LiveSession>> {
    let all = state.registry.live_sessions().into_iter();
    all.filter(|s| s.identity_hash() == hash).collect()
}

/// Where the backend keeps an account (by name or identity hash) that has no live session.
async fn stored_placement(state: &AppState, who: &str, by_hash: bool) -> Option<Placement> {
    let accounts = state.backend.accounts().await.ok()?;
    let a = accounts.into_iter().find(|a| match by_hash {
        true => a.identity_hash.eq_ignore_ascii_case(who),
        false => a.user == who,
    })?;
    Some(Placement {
        home: crate::pool::home_of(&a.user),
        user: a.user,
        container: a.container,
        container_id: a.container_id,
    })
}

async fn hang_up(sessions: &[Arc<LiveSession>]) {
    futures_util::future::join_all(sessions.iter().map(|s| s.hang_up())).await;
}

/// The backend's reap of the account, once none of its sessions is live (local sessions all run
/// as one account: its reap would end other users' jobs while any session lives).
async fn reap(state: &AppState, placement: &Placement) -> bool {
    let deadline = tokio::time::Instant::now() + END_WAIT;
    while state.registry.account_is_live(&placement.user) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if state.backend.mode() == "container" && placement.container_id.is_none() {
        return true; // no slot: nothing runs anywhere
    }
    match state.backend.reap(placement).await {
        Ok(()) => true,
        Err(e) => {
            log::warn!("admin: ending the processes of {}: {e}", placement.user);
            false
        }
    }
}

/// `GET /admin/blocks`.
async fn blocks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "blocks": state.blocks.list() }))
}

#[derive(Deserialize)]
struct NewBlock {
    kind: String,
    value: String,
    reason: Option<String>,
}

/// `POST /admin/blocks` `{"kind": "identity"|"address", "value": ..., "reason": ...}`: the block
/// is stored, then every live session it covers is hung up.
async fn add_block(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    if body.len() > MAX_BODY {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large");
    }
    let new: NewBlock = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("bad block: {e}")),
    };
    let Some(kind) = BlockKind::parse(&new.kind) else {
        return plain(StatusCode::BAD_REQUEST, "kind must be identity or address");
    };
    let reason = new.reason.unwrap_or_else(|| "no reason given".into());
    let (blocks, value) = (state.blocks.clone(), new.value);
    // Off this worker: the store may be the Swarm's (see `api::off_worker`).
    let added = web::block(move || blocks.add(kind, &value, &reason)).await;
    let block = match added {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return block_error(e),
        Err(_) => return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later"),
    };
    let covered: Vec<Arc<LiveSession>> = state
        .registry
        .live_sessions()
        .into_iter()
        .filter(|s| match kind {
            BlockKind::Identity => s.identity_hash() == block.value,
            BlockKind::Address => state.blocks.matching(None, s.client).is_some(),
        })
        .collect();
    hang_up(&covered).await;
    audit_action(&req, "block")
        .field("kind", kind.as_str())
        .field("value", &block.value)
        .field("reason", &block.reason)
        .field("sessions_ended", covered.len())
        .emit();
    HttpResponse::Created().json(serde_json::json!({
        "block": block,
        "sessions_ended": covered.len(),
        "persistent": state.blocks.is_persistent(),
    }))
}

/// `DELETE /admin/blocks/{kind}/{value}` (an address block's `/` may stay unescaped).
async fn remove_block(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (kind, value) = path.into_inner();
    let Some(kind) = BlockKind::parse(&kind) else {
        return plain(StatusCode::BAD_REQUEST, "kind must be identity or address");
    };
    let (blocks, removed_value) = (state.blocks.clone(), value.clone());
    let removed = web::block(move || blocks.remove(kind, &removed_value)).await;
    let Ok(removed) = removed else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later");
    };
    match removed {
        Ok(true) => {
            audit_action(&req, "unblock")
                .field("kind", kind.as_str())
                .field("value", &value)
                .emit();
            HttpResponse::NoContent().finish()
        }
        Ok(false) => plain(StatusCode::NOT_FOUND, "no such block"),
        Err(e) => block_error(e),
    }
}

fn block_error(e: BlockError) -> HttpResponse {
    match e {
        BlockError::Store(e) => {
            log::error!("admin: the store refused a block change: {e}");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot be written",
            )
        }
        other => plain(StatusCode::BAD_REQUEST, other.to_string()),
    }
}
