//! Where a request comes from: the host name it was sent to, the origin of the page that sent it,
//! and whether another site started the navigation. The page, the login and the upgrade each
//! decide with these; the host check guards every route but `/healthz`.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::{normalize_host, Config};

/// The host names the server answers to (`None`: any), worked out from the configuration once.
pub(super) struct AllowedHosts(Option<Vec<String>>);

impl AllowedHosts {
    pub(super) fn from_config(config: &Config) -> Self {
        AllowedHosts(config.host_names())
    }

    fn allow(&self, req: &HttpRequest) -> bool {
        let Some(names) = &self.0 else {
            return true;
        };
        match req.headers().get(header::HOST).map(|h| h.to_str()) {
            // No Host at all is not a browser (they always send one), so not a rebinding page.
            None => true,
            Some(Ok(host)) => names.contains(&normalize_host(host_name(host))),
            Some(Err(_)) => false,
        }
    }
}

/// Refuses (403) a request sent to a host name the server does not answer to (`ALLOWED_HOSTS`).
/// Without it, a web page whose own name an attacker points at 127.0.0.1 (DNS rebinding) would be
/// same-origin with this server, get an identity and open a shell.
pub(super) async fn allowed_hosts_only(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let allowed = req.path() == "/healthz"
        || req
            .app_data::<web::Data<AllowedHosts>>()
            .is_some_and(|hosts| hosts.allow(req.request()));
    if allowed {
        return next.call(req).await;
    }
    log::info!("refused a request for a host name not in ALLOWED_HOSTS");
    let refusal = HttpResponse::Forbidden()
        .content_type("text/plain; charset=utf-8")
        .body("this server does not answer to that host name (see ALLOWED_HOSTS)");
    Ok(req.into_response(refusal))
}

/// The name part of a `Host` header: without the port, and an IPv6 literal without brackets.
fn host_name(host: &str) -> &str {
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

/// Whether a browser request comes from this server's own pages: no `Origin` (not a browser, or
/// a same-origin GET), or an `Origin` that is this server (either scheme, same `Host`) or one of
/// `ALLOWED_ORIGINS`.
pub(super) fn origin_allowed(req: &HttpRequest, config: &Config) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let own = !host.is_empty()
        && (origin == format!("http://{host}") || origin == format!("https://{host}"));
    own || config.extra_origins().any(|o| o == origin)
}

/// Whether another site started this navigation (a link or a form elsewhere), per the browser's
/// `Sec-Fetch-Site`. The identity cookie is `SameSite=Strict`, so such a request arrives without
/// it even when the browser has one.
pub(super) fn started_elsewhere(req: &HttpRequest) -> bool {
    req.headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("localhost:3000"), "localhost");
        assert_eq!(host_name("example.org"), "example.org");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
        assert_eq!(host_name("[broken"), "broken");
        assert_eq!(host_name(""), "");
    }
}
