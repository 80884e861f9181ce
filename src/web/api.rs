//! `api/*`: JSON endpoints of the page beside its WebSocket: who am I, my sessions (list, end),
//! access keys. Same-origin only, with the page's identity; errors are `{"error": ...}`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{provenance, AppState};
use crate::identity::{self, Mode};
use crate::tty::TtyError;

/// A refused or failed API call: its status and a message for people.
pub(super) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "error": self.message }))
    }
}

pub(super) type ApiResult = Result<HttpResponse, ApiError>;

/// Answers with the handler's response or its error as JSON.
pub(super) fn answer(result: ApiResult) -> HttpResponse {
    result.unwrap_or_else(|e| e.response())
}

/// The identity of a same-origin caller. A foreign `Origin` is refused (403) like the
/// WebSocket's; a call that changes state also when the browser says another site started it.
pub(super) fn caller(
    req: &HttpRequest,
    state: &AppState,
    changes: bool,
) -> Result<String, ApiError> {
    if !provenance::origin_allowed(req, &state.options)
        || (changes && provenance::started_elsewhere(req))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin request refused: the Origin is not this server",
        ));
    }
    provenance::identify(req, &state.identifier).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no valid identity: load the terminal page first (or log in)",
        )
    })
}

/// Runs `f` on the blocking pool: the access-key store may be the Swarm's (a listing of configs,
/// 10-60 ms), which must not hold up the sessions this worker thread relays.
async fn off_worker<T: Send + 'static>(
    state: &web::Data<AppState>,
    f: impl FnOnce(&AppState) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    web::block(move || f(&state)).await.map_err(|e| {
        log::error!("a store call failed to run: {e}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "try again later")
    })
}

fn ok(status: StatusCode, body: serde_json::Value) -> ApiResult {
    Ok(HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// The Linux account of `identity`: its live sessions' account, else where it would be placed.
async fn linux_user(state: &AppState, identity: &str) -> Result<String, ApiError> {
    if let Some(session) = state.registry.sessions_of(identity).first() {
        return Ok(session.placement.user.clone());
    }
    let registry = state.registry.clone();
    let placement = state
        .backend
        .place(identity, &move |account| registry.account_is_live(account))
        .await
        .map_err(backend_error)?;
    Ok(placement.user)
}

pub(super) fn backend_error(e: TtyError) -> ApiError {
    match e {
        TtyError::Refused(m) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, m),
        TtyError::Unavailable(u) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, u.to_string()),
        other => {
            log::warn!("API call failed: {other}");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        }
    }
}

fn mode_name(mode: &Mode) -> &'static str {
    match mode {
        Mode::Cookie => "cookie",
        Mode::Header { .. } => "header",
        Mode::Token(_) => "token",
    }
}

/// `GET api/whoami`.
pub(super) async fn whoami(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    answer(
        async {
            let identity = caller(&req, &state, false)?;
            let user = linux_user(&state, &identity).await?;
            let has_key = off_worker(&state, move |s| s.workspace.keys.has_key(&identity)).await?;
            ok(
                StatusCode::OK,
                json!({
                    "user": user,
                    "mode": mode_name(&state.identifier.mode),
                    "access_key": has_key,
                }),
            )
        }
        .await,
    )
}

/// `GET api/sessions`: the caller's live sessions, attached or waiting for a re-attach.
pub(super) async fn sessions(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    answer(
        async {
            let identity = caller(&req, &state, false)?;
            let user = linux_user(&state, &identity).await?;
            let sessions: Vec<_> = state
                .registry
                .sessions_of(&identity)
                .iter()
                .map(|s| s.summary())
                .collect();
            ok(
                StatusCode::OK,
                json!({
                    "user": user,
                    "limit": state.registry.max_sessions_per_user(),
                    "sessions": sessions,
                }),
            )
        }
        .await,
    )
}

/// `DELETE api/sessions/{id}`: hangs up one of the caller's sessions.
pub(super) async fn end_session(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    answer(
        async {
            let identity = caller(&req, &state, true)?;
            let session = state
                .registry
                .find(&id, &identity)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such session of yours"))?;
            log::info!("session {} ended by its user", session.id);
            session.end_now().await;
            Ok(HttpResponse::NoContent().finish())
        }
        .await,
    )
}

/// Access keys exist in cookie mode only: elsewhere the account is not a browser's cookie.
fn cookie_mode_only(state: &AppState) -> Result<(), ApiError> {
    match state.identifier.mode {
        Mode::Cookie => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "access keys exist only in cookie mode",
        )),
    }
}

/// `POST api/access-key`: a new key for the caller's account, ending the previous one.
pub(super) async fn create_key(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    answer(
        async {
            cookie_mode_only(&state)?;
            let identity = caller(&req, &state, true)?;
            let created = off_worker(&state, move |s| s.workspace.keys.create(&identity)).await?;
            let key = created.map_err(|e| {
                log::error!("{e}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the key could not be saved",
                )
            })?;
            log::info!("a new access key was made for an account");
            ok(StatusCode::OK, json!({ "key": key }))
        }
        .await,
    )
}

#[derive(serde::Deserialize)]
pub(super) struct Redeem {
    key: String,
}

/// `POST api/access-key/redeem`: this browser becomes the account of the key.
pub(super) async fn redeem_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    answer(
        async {
            cookie_mode_only(&state)?;
            caller(&req, &state, true)?;
            if !state
                .workspace
                .redeems
                .allow(provenance::client_address(&req))
            {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many access key attempts: wait a minute",
                ));
            }
            let Ok(Redeem { key }) = serde_json::from_slice::<Redeem>(&body) else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "send JSON {\"key\": \"...\"}",
                ));
            };
            let found = off_worker(&state, move |s| {
                s.workspace.keys.identity_for_key(key.trim())
            });
            let Some(identity) = found.await? else {
                log::info!("an unknown or replaced access key was presented");
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "unknown or replaced access key",
                ));
            };
            let user = linux_user(&state, &identity).await?;
            let value = state.identifier.signer.sign(&identity);
            let cookie = identity::set_cookie_header(&value, provenance::is_https(&req));
            Ok(HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::SET_COOKIE, cookie))
                .json(json!({ "user": user })))
        }
        .await,
    )
}
