//! Refuses every request of a blocked client (its address or its identity) with a 403 that says
//! why: the page, the upgrade and the API alike. The admin API and the probes stay reachable.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use super::{provenance, AppState};
use crate::audit;
use crate::pool::store::BlockKind;

/// Paths a block never covers: the operator's own, and the probes of load balancers.
fn exempt(path: &str) -> bool {
    path.starts_with("/admin/") || path == "/healthz" || path == "/metrics"
}

pub(super) async fn refuse_blocked(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    if state.blocks.is_empty() || exempt(req.path()) {
        return next.call(req).await;
    }
    let client = provenance::client_address(req.request());
    let identity = provenance::identify(req.request(), &state.identifier);
    let Some(block) = state.blocks.matching(identity.as_deref(), client) else {
        return next.call(req).await;
    };
    state.metrics.count_refusal_reason("blocked");
    audit::Line::new("refused")
        .field("status", 403)
        .field("reason", "blocked")
        .field("block", block.kind.as_str())
        .field("path", req.path())
        .identity(identity.as_deref())
        .client(client)
        .emit();
    let whom = match block.kind {
        BlockKind::Address => "your address",
        BlockKind::Identity => "your account",
    };
    let refusal = HttpResponse::Forbidden()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(format!(
            "{whom} is blocked by the operator of this server: {}",
            block.reason
        ));
    Ok(req.into_response(refusal))
}
