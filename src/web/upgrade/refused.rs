//! Why an upgrade was refused, as the plain HTTP status the client gets, a snake_case label for
//! the audit trail and `/metrics`, and the line in the server's log.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use super::super::{provenance, AppState};
use crate::audit;
use crate::session::Refusal;
use crate::tty::{TtyError, Unavailability};

/// An upgrade refused before the WebSocket opened.
pub(super) struct Refused {
    pub(super) status: StatusCode,
    message: String,
    /// A short snake_case label for the audit trail and `/metrics`.
    reason: Cow<'static, str>,
}

impl Refused {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Refused {
        let reason = match status.as_u16() {
            400 => "bad_request",
            401 => "no_identity",
            403 => "forbidden_origin",
            429 => "limited",
            _ => "unavailable",
        };
        Refused {
            status,
            message: message.into(),
            reason: Cow::Borrowed(reason),
        }
    }

    /// The same refusal under a more telling label.
    pub(super) fn because(mut self, reason: impl Into<Cow<'static, str>>) -> Refused {
        self.reason = reason.into();
        self
    }
}

pub(super) fn refusal_response(req: &HttpRequest, state: &AppState, r: Refused) -> HttpResponse {
    state.metrics.count_refusal(r.status.as_u16());
    state.metrics.count_refusal_reason(&r.reason);
    log::info!("WebSocket upgrade refused ({}): {}", r.status, r.message);
    audit::Line::new("refused")
        .field("status", r.status.as_u16())
        .field("reason", &r.reason)
        .identity(provenance::identify(req, &state.identifier).as_deref())
        .client(provenance::client_address(req))
        .emit();
    HttpResponse::build(r.status)
        .content_type("text/plain; charset=utf-8")
        .body(r.message)
}

/// 503 when the whole server is full, else 429: this client is asking for too much.
pub(super) fn admission_refusal(e: Refusal) -> Refused {
    let status = if e.is_server_full() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    let reason = snake_case_variant(&e);
    Refused::new(status, e.to_string()).because(reason)
}

/// The name of an enum value's variant in snake_case (`TooFast(3)` -> `too_fast`), as a label
/// that follows the variants as they are added.
fn snake_case_variant(value: &impl std::fmt::Debug) -> String {
    let debug = format!("{value:?}");
    let name = debug.split(['(', ' ', '{']).next().unwrap_or_default();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The refusal of a backend error. A 503 tells only the kind of failure and a reference to the
/// server's log line with the details: the client may be anyone.
pub(super) fn backend_refusal(e: TtyError) -> Refused {
    match e {
        TtyError::Unavailable(u) => Refused::new(StatusCode::SERVICE_UNAVAILABLE, u.to_string())
            .because(snake_case_variant(&u.kind)),
        TtyError::Refused(m) => Refused::new(StatusCode::TOO_MANY_REQUESTS, m).because("backend"),
        other => backend_refusal(TtyError::unavailable(
            Unavailability::NotPrepared,
            format!("could not start a session: {other}"),
        )),
    }
}
