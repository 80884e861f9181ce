//! `/healthz` and `/metrics`: what an operator or a load balancer asks the server about itself.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::metrics::{Metrics, Occupancy};

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
    let mut body = state.metrics.render();
    body.push_str(&Metrics::render_occupancy(&occupancy(&state)));
    body.push_str(&Metrics::render_nodes(&state.backend.container_nodes()));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// Users assigned (the backend's count) and live sessions (the registry's) of every container.
fn occupancy(state: &AppState) -> Vec<Occupancy> {
    let mut by_name: BTreeMap<String, Occupancy> = state
        .backend
        .users_per_container()
        .into_iter()
        .map(|(container, users_assigned)| {
            let o = Occupancy {
                container: container.clone(),
                users_assigned,
                live_sessions: 0,
            };
            (container, o)
        })
        .collect();
    for s in state.registry.live_sessions() {
        if let Some(name) = &s.placement.container {
            let o = by_name.entry(name.clone()).or_insert_with(|| Occupancy {
                container: name.clone(),
                ..Occupancy::default()
            });
            o.live_sessions += 1;
        }
    }
    by_name.into_values().collect()
}
