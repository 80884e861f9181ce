//! Where requests come from, against the real server: the host name a request was sent to (DNS
//! rebinding), navigations that another site started (the identity cookie is `SameSite=Strict`),
//! cross-site logins, and the plain GET with which the page learns why its upgrade was refused.

mod common;

use common::{header, http_get, http_request, Server};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The status of a real WebSocket upgrade sent with these `Host`, `Origin` and cookie headers.
async fn upgrade_status(server: &Server, host: &str, origin: &str, cookie: &str) -> u16 {
    let mut req = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    for (name, value) in [("Host", host), ("Origin", origin), ("Cookie", cookie)] {
        req.headers_mut()
            .insert(name, HeaderValue::from_str(value).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("connect failed: {e}"),
    }
}

#[tokio::test]
async fn on_loopback_only_this_machines_own_names_are_answered() {
    let server = Server::local(&[]);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let cookie = server.new_identity().await;
    // A page at http://evil.example:PORT whose name resolves to 127.0.0.1 is its own origin: the
    // Origin check alone would let it in.
    let evil = format!("evil.example:{port}");
    let (status, headers, body) = http_get(&server.addr, "/", &[("Host", &evil)]).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(
        header(&headers, "set-cookie").is_none(),
        "no identity for it"
    );
    assert!(String::from_utf8_lossy(&body).contains("ALLOWED_HOSTS"));
    let origin = format!("http://{evil}");
    assert_eq!(upgrade_status(&server, &evil, &origin, &cookie).await, 403);
    for name in ["localhost", "LocalHost.", "127.0.0.1", "[::1]"] {
        let host = format!("{name}:{port}");
        let (status, _, _) = http_get(&server.addr, "/", &[("Host", &host)]).await;
        assert_eq!(status, 200, "{host}");
        let origin = format!("http://{host}");
        assert_eq!(upgrade_status(&server, &host, &origin, &cookie).await, 101);
    }
    // Health checks come from anywhere, under any name.
    let (status, _, _) = http_get(&server.addr, "/healthz", &[("Host", &evil)]).await;
    assert_eq!(status, 200);

    // Named hosts replace the defaults.
    let named = Server::local(&["--allowed-hosts", "term.example.org"]);
    let (status, _, _) = http_get(&named.addr, "/", &[("Host", "term.example.org")]).await;
    assert_eq!(status, 200);
    let (status, _, _) = http_get(&named.addr, "/", &[]).await;
    assert_eq!(status, 403, "127.0.0.1 is no longer one of its names");
}

#[tokio::test]
async fn a_plain_get_of_the_socket_url_gets_the_refusal_an_upgrade_would_get() {
    let server = Server::local(&["--max-sessions-per-user", "1"]);
    let status = |path: &str, headers: Vec<(&'static str, String)>| {
        let (addr, path) = (server.addr.clone(), path.to_owned());
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _, body) = http_get(&addr, &path, &headers).await;
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (code, body) = status("/ws", vec![]).await;
    assert_eq!(code, 401, "no identity: {body}");
    let cookie = server.new_identity().await;
    let with_cookie = || vec![("Cookie", cookie.clone())];
    let (code, body) = status("/ws", with_cookie()).await;
    assert_eq!(code, 400, "nothing wrong but the missing upgrade: {body}");
    let mut foreign = with_cookie();
    foreign.push(("Origin", "http://evil.example".to_owned()));
    assert_eq!(status("/ws", foreign).await.0, 403);
    assert_eq!(status("/ws?cols=0", with_cookie()).await.0, 400);

    // At the limit: 429, as the upgrade gets; the probe itself takes no session.
    let mut live = server.connect_as(&cookie, "").await;
    let id = live.ready().await.session.into_owned();
    let (code, body) = status("/ws", with_cookie()).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(server.refusal(&cookie, "", None).await.0, 429);
    // Re-attaching to the live session is no new session: not refused.
    let resume = format!("/ws?session={id}");
    assert_eq!(status(&resume, with_cookie()).await.0, 400);
    drop(live);
    let other = server.new_identity().await;
    assert_eq!(
        status("/ws", vec![("Cookie", other.clone())]).await.0,
        400,
        "limits are per user"
    );
    server.connect_as(&other, "").await.ready().await;
}

#[tokio::test]
async fn a_link_from_another_site_does_not_replace_the_identity() {
    let server = Server::local(&[]);
    // A navigation another site started comes without the SameSite=Strict cookie: the page
    // reloads itself from this site instead of giving the browser a new identity.
    let (status, headers, body) = http_get(
        &server.addr,
        "/?fontSize=20",
        &[("Sec-Fetch-Site", "cross-site")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(header(&headers, "set-cookie").is_none(), "no new identity");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("http-equiv=refresh content=0"), "{body}");
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    // The reload is a navigation of this site: a browser without a cookie gets one then.
    let (status, headers, _) =
        http_get(&server.addr, "/", &[("Sec-Fetch-Site", "same-origin")]).await;
    assert_eq!(status, 200);
    let cookie = header(&headers, "set-cookie").expect("an identity");
    assert!(cookie.contains("SameSite=Strict"));
    // Typed or bookmarked (none), or from an old browser (no header): served at once.
    for fetch_site in [Some("none"), None] {
        let headers: Vec<_> = fetch_site
            .map(|v| ("Sec-Fetch-Site", v))
            .into_iter()
            .collect();
        let (_, got, _) = http_get(&server.addr, "/", &headers).await;
        assert!(header(&got, "set-cookie").is_some(), "{fetch_site:?}");
    }
}

#[tokio::test]
async fn token_logins_from_other_sites_need_the_user() {
    let server = Server::with_alice_token("provenance");
    // Another site's link with its own token: no login, a form the user must submit here.
    let (status, headers, body) = http_get(
        &server.addr,
        "/?token=alice-secret-token-123456",
        &[("Sec-Fetch-Site", "cross-site")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(header(&headers, "set-cookie").is_none(), "not logged in");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("<form method=post action=/login>"), "{body}");
    assert!(
        body.contains("value=\"alice-secret-token-123456\""),
        "{body}"
    );
    // Whatever the link says stays text in that form.
    let (_, _, body) = http_get(
        &server.addr,
        "/?token=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
        &[("Sec-Fetch-Site", "cross-site")],
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert!(!body.contains("<script>"), "{body}");
    assert!(body.contains("&quot;&gt;&lt;script&gt;"), "{body}");

    // A form on another site posting a token: refused. The same form of this site: logged in.
    let form = b"token=alice-secret-token-123456";
    let post = |origin: String| {
        let addr = server.addr.clone();
        async move {
            let headers = [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", origin.as_str()),
            ];
            http_request(&addr, "POST", "/login", &headers, form).await
        }
    };
    let (status, headers, _) = post("http://evil.example".to_owned()).await;
    assert_eq!(status, 403);
    assert!(header(&headers, "set-cookie").is_none());
    let (status, headers, _) = post(format!("http://{}", server.addr)).await;
    assert_eq!(status, 303);
    assert!(header(&headers, "set-cookie").is_some());
}

/// The `Secure` flag of the identity cookie a first visit gets with `headers`.
async fn cookie_is_secure(server: &Server, headers: &[(&str, &str)]) -> bool {
    let (status, got, _) = http_get(&server.addr, "/", headers).await;
    assert_eq!(status, 200);
    let cookie = header(&got, "set-cookie").expect("an identity");
    cookie.split(';').any(|attr| attr.trim() == "Secure")
}

#[tokio::test]
async fn only_a_trusted_proxy_can_say_the_browser_came_over_https() {
    let told_https: [&[(&str, &str)]; 2] = [
        &[("X-Forwarded-Proto", "https")],
        &[("Forwarded", "for=203.0.113.7;proto=https")],
    ];
    // termpool serves plain http: whoever connects directly did so over http, whatever it says.
    let direct = Server::local(&[]);
    for headers in told_https {
        assert!(!cookie_is_secure(&direct, headers).await, "{headers:?}");
    }
    // A TLS proxy of TRUSTED_PROXIES is believed.
    let proxied = Server::local(&["--trusted-proxies", "127.0.0.1"]);
    for headers in told_https {
        assert!(cookie_is_secure(&proxied, headers).await, "{headers:?}");
    }
    assert!(
        !cookie_is_secure(&proxied, &[]).await,
        "plain http through the proxy"
    );
}
