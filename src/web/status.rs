//! `/healthz` and `/metrics`: what an operator or a load balancer asks the server about itself.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::AppState;

pub(super) async fn healthz(state: web::Data<AppState>) -> HttpResponse {
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

pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
