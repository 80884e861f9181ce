//! `POST api/upload?session=ID&name=NAME`: the request body becomes a new file in the session's
//! working directory, written as the session's user; limited by `MAX_UPLOAD_MB` before and
//! while reading, and to `MAX_UPLOADS_PER_USER` under way at once.

use std::path::Path;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::api::{answer, caller, ApiError, ApiResult};
use super::AppState;
use crate::session::LiveSession;
use crate::workspace::files::{self, UploadError};

#[derive(serde::Deserialize)]
struct UploadQuery {
    session: String,
    name: String,
}

pub(super) async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Payload,
) -> HttpResponse {
    answer(receive(&req, &state, body).await)
}

async fn receive(req: &HttpRequest, state: &AppState, body: web::Payload) -> ApiResult {
    let identity = caller(req, state, true)?;
    let query = web::Query::<UploadQuery>::from_query(req.query_string()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "name the session and the file: ?session=ID&name=NAME",
        )
    })?;
    files::check_name(&query.name).map_err(upload_error)?;
    let length = content_length(req, state.options.max_upload_bytes)?;
    // Held until the file is written or refused.
    let _under_way = state.workspace.uploads.begin(&identity).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} uploads of yours are under way: wait for one to finish",
                state.workspace.uploads.max()
            ),
        )
    })?;
    let session = state
        .registry
        .find(&query.session, &identity)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such session of yours"))?;
    if session.placement.container.is_some() {
        let path = into_container(state, &session, &query.name, length, body).await?;
        return Ok(created(&path));
    }
    let dir = files::target_dir(session.shell_pid(), &session.placement.home);
    let (file, path) = files::create(&dir, &query.name).map_err(upload_error)?;
    let written = write_body(file, body, length, state.options.max_upload_bytes).await;
    if let Err(e) = written {
        // Nothing half-written stays: the name was ours alone (O_EXCL) until now.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(created(&path.display().to_string()))
}

fn created(path: &str) -> HttpResponse {
    log::info!("upload written");
    HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "path": path }))
}

/// Container mode: the backend writes the file as the user, fed the body through a channel (the
/// request's body stream stays on this worker). A body refused midway ends the channel short.
async fn into_container(
    state: &AppState,
    session: &LiveSession,
    name: &str,
    length: u64,
    mut body: web::Payload,
) -> Result<String, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let max = state.options.max_upload_bytes;
    let forwarding = async move {
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| broke_off())?;
            received += chunk.len() as u64;
            if received > max {
                return Err(too_large(max));
            }
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        Ok(())
    };
    let writing =
        state
            .backend
            .write_file(&session.placement, session.shell_pid(), name, length, rx);
    let (forwarded, written) = futures_util::join!(forwarding, writing);
    forwarded?;
    written.map_err(upload_error)
}

fn broke_off() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "the upload broke off")
}

/// The announced body size: required, and within the limit.
fn content_length(req: &HttpRequest, max: u64) -> Result<u64, ApiError> {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .ok_or_else(|| ApiError::new(StatusCode::LENGTH_REQUIRED, "Content-Length is required"))?;
    if length > max {
        return Err(too_large(max));
    }
    Ok(length)
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the file is larger than the limit of {} MiB", max >> 20),
    )
}

/// Copies the body into `file`, refusing more than `max` bytes, and checks it all arrived.
async fn write_body(
    file: std::fs::File,
    mut body: web::Payload,
    length: u64,
    max: u64,
) -> Result<(), ApiError> {
    let mut file = tokio::fs::File::from_std(file);
    let mut received = 0u64;
    let io_error = |e| upload_error(UploadError::from_io(e, "", Path::new("")));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the upload broke off: {e}"),
            )
        })?;
        received += chunk.len() as u64;
        if received > max {
            return Err(too_large(max));
        }
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    file.flush().await.map_err(io_error)?;
    file.sync_all().await.map_err(io_error)?;
    if received != length {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the upload broke off",
        ));
    }
    Ok(())
}

fn upload_error(e: UploadError) -> ApiError {
    let status = match &e {
        UploadError::BadName(_) => StatusCode::BAD_REQUEST,
        UploadError::Exists(_) => StatusCode::CONFLICT,
        UploadError::Quota => StatusCode::INSUFFICIENT_STORAGE,
        UploadError::Denied(_) => StatusCode::FORBIDDEN,
        UploadError::Unsupported => StatusCode::NOT_IMPLEMENTED,
        UploadError::Io(io) => {
            log::warn!("upload failed: {io}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    ApiError::new(status, e.to_string())
}
