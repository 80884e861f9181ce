//! Who is asking and from where: the identity a request carries, the host name it was sent to, the
//! origin of the page that sent it, and the client's address and scheme as trusted proxies tell.

use std::net::{IpAddr, SocketAddr};

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::{normalize_host, ServerOptions};
use crate::identity::{
    identity_cookie, single_header, Asking, Identifier, Mode, TrustedProxies, Unidentified,
};

/// The host names the server answers to (`None`: any), whether any IP address literal too, and
/// the health check's path, worked out from the configuration once.
pub(super) struct AllowedHosts(Option<Vec<String>>, bool, String);

impl AllowedHosts {
    pub(super) fn new(options: &ServerOptions) -> Self {
        let health = format!("{}healthz", options.base_path);
        AllowedHosts(
            options.allowed_hosts.clone(),
            options.ip_literal_hosts,
            health,
        )
    }

    fn allow(&self, req: &HttpRequest) -> bool {
        let Some(names) = &self.0 else {
            return true;
        };
        let allowed = |host: &str| {
            let name = normalize_host(host_name(host));
            // No name can be rebound to an address literal.
            names.contains(&name) || (self.1 && name.parse::<IpAddr>().is_ok())
        };
        match req.headers().get(header::HOST).map(|h| h.to_str()) {
            // No Host at all is not a browser (they always send one), so not a rebinding page.
            None => true,
            Some(Ok(host)) => allowed(host),
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
    let allowed = req
        .app_data::<web::Data<AllowedHosts>>()
        .is_some_and(|hosts| req.path() == hosts.2 || hosts.allow(req.request()));
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
pub(super) fn origin_allowed(req: &HttpRequest, options: &ServerOptions) -> bool {
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
    own || options.allowed_origins.iter().any(|o| o == origin)
}

/// Whether another site started this navigation (a link or a form elsewhere), per the browser's
/// `Sec-Fetch-Site`. The identity cookie is `SameSite=Strict`, so such a request arrives without
/// it even when the browser has one.
pub(super) fn started_elsewhere(req: &HttpRequest) -> bool {
    req.headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

/// Who is asking in the configured identity mode (`None` also for an ambiguous request: see
/// `identify_checked` for why).
pub(super) fn identify(req: &HttpRequest, identifier: &Identifier) -> Option<String> {
    identify_checked(req, identifier).ok()
}

/// Who is asking in the configured identity mode, or why nobody: an identity cookie or header sent twice is refused as such,
/// never resolved by order (a planted cookie comes first).
pub(super) fn identify_checked(
    req: &HttpRequest,
    identifier: &Identifier,
) -> Result<String, Unidentified> {
    let values = |name: &str| {
        req.headers()
            .get_all(name)
            .map(|v| v.to_str().unwrap_or(""))
            .collect::<Vec<_>>()
    };
    let (cookie, header) = match &identifier.mode {
        Mode::Header { header, .. } => (None, single_header(header, values(header))?),
        Mode::Cookie | Mode::Token(_) => {
            let cookies = values(header::COOKIE.as_str());
            (identity_cookie(cookies.iter().copied())?, None)
        }
    };
    identifier
        .identify(&Asking {
            cookie,
            peer: req.peer_addr().map(|a| a.ip()),
            header,
        })
        .ok_or(Unidentified::Missing)
}

/// Whether `ip` is one of the reverse proxies whose forwarding headers are believed.
fn is_trusted_proxy(req: &HttpRequest, ip: IpAddr) -> bool {
    req.app_data::<web::Data<TrustedProxies>>()
        .is_some_and(|proxies| proxies.contains(ip))
}

/// The client's address: the TCP peer, or, while that is a trusted proxy, the hop before it in
/// `X-Forwarded-For`. Read from the right: a client can write anything to the left of the
/// address its proxy appends.
pub(super) fn client_address(req: &HttpRequest) -> Option<IpAddr> {
    let mut client = req.peer_addr()?.ip().to_canonical();
    let mut hops = forwarded_for(req).into_iter().rev();
    while is_trusted_proxy(req, client) {
        match hops.next().flatten() {
            Some(hop) => client = hop,
            None => break,
        }
    }
    Some(client)
}

/// The hops of every `X-Forwarded-For` header, in order; `None` for one that is no address.
fn forwarded_for(req: &HttpRequest) -> Vec<Option<IpAddr>> {
    req.headers()
        .get_all("x-forwarded-for")
        .flat_map(|value| value.to_str().unwrap_or("").split(','))
        .map(|hop| {
            let hop = hop.trim();
            let ip = hop
                .parse()
                .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()));
            ip.ok().map(|ip: IpAddr| ip.to_canonical())
        })
        .collect()
}

/// Whether the browser reached this server over https. termpool itself serves plain http, so
/// only a trusted proxy (TLS in front of it) can say so, with `Forwarded` or `X-Forwarded-Proto`.
pub(super) fn is_https(req: &HttpRequest) -> bool {
    let from_proxy = req
        .peer_addr()
        .is_some_and(|peer| is_trusted_proxy(req, peer.ip()));
    if from_proxy {
        req.connection_info().scheme() == "https"
    } else {
        req.app_config().secure()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(peer: &str, headers: &[(&str, &str)], proxies: &[&str]) -> HttpRequest {
        let proxies = TrustedProxies::parse(proxies).unwrap();
        let mut req = TestRequest::default()
            .peer_addr(peer.parse().unwrap())
            .app_data(web::Data::new(proxies));
        for (name, value) in headers {
            req = req.append_header((*name, *value));
        }
        req.to_http_request()
    }

    #[test]
    fn the_client_address_is_believed_only_from_trusted_proxies() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let xff = |v| [("X-Forwarded-For", v)];
        let peer = "10.0.0.2:4000";
        assert_eq!(
            client_address(&request(peer, &xff("1.2.3.4"), &[])),
            ip("10.0.0.2")
        );
        let proxied =
            |headers: &[(&str, &str)]| client_address(&request(peer, headers, &["10.0.0.0/8"]));
        assert_eq!(proxied(&[]), ip("10.0.0.2"), "no header: the proxy itself");
        assert_eq!(proxied(&xff("1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(proxied(&xff("9.9.9.9, 1.2.3.4, 10.1.1.1")), ip("1.2.3.4"));
        assert_eq!(proxied(&xff("10.3.3.3, 10.1.1.1")), ip("10.3.3.3"));
        assert_eq!(proxied(&xff("[2001:db8::1]:443")), ip("2001:db8::1"));
        assert_eq!(proxied(&xff("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(proxied(&xff("1.2.3.4, nonsense")), ip("10.0.0.2"));
        let two = [
            ("X-Forwarded-For", "9.9.9.9"),
            ("X-Forwarded-For", "1.2.3.4"),
        ];
        assert_eq!(proxied(&two), ip("1.2.3.4"), "the last header's last hop");
    }

    #[test]
    fn only_a_trusted_proxy_says_https() {
        let https = [("X-Forwarded-Proto", "https")];
        assert!(!is_https(&request("10.0.0.2:1", &https, &[])));
        assert!(is_https(&request("10.0.0.2:1", &https, &["10.0.0.2"])));
        assert!(!is_https(&request("10.0.0.2:1", &[], &["10.0.0.2"])));
    }

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
