//! Identity modes against the real server: a trusted auth proxy's header, and static tokens
//! exchanged for a cookie. (Cookie mode is covered in local_protocol.rs.)

mod common;

use common::{header, http_get, Server};

/// Opens `/ws` with extra request headers; the HTTP status of a refusal, or 101.
async fn upgrade_status(server: &Server, headers: &[(&'static str, &str)]) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// Opens `/ws` with the identity header set to `user`; the HTTP status of a refusal.
async fn connect_with_header(server: &Server, user: &str) -> Result<impl Sized, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("X-Forwarded-User", user.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("connect failed: {e}"),
    }
}

#[tokio::test]
async fn header_mode_believes_only_trusted_proxies() {
    let trusted = Server::local(&[
        "--identity-mode",
        "header",
        "--trusted-proxies",
        "127.0.0.1",
        "--max-sessions-per-user",
        "1",
        "--reattach-grace-secs",
        "0",
    ]);
    // The identity is the header's: alice's second session hits her limit, bob is someone else.
    let alice = connect_with_header(&trusted, "alice").await;
    assert!(alice.is_ok(), "alice connects");
    assert_eq!(
        connect_with_header(&trusted, "alice").await.err(),
        Some(429)
    );
    let bob = connect_with_header(&trusted, "bob").await;
    assert!(bob.is_ok(), "bob is another user");
    assert_eq!(
        connect_with_header(&trusted, "no spaces allowed")
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        upgrade_status(&trusted, &[]).await,
        401,
        "no header, no identity"
    );
    drop(alice);

    // From an address not in TRUSTED_PROXIES the header is ignored: no identity at all.
    let untrusted = Server::local(&[
        "--identity-mode",
        "header",
        "--trusted-proxies",
        "10.20.30.40",
    ]);
    assert_eq!(
        upgrade_status(&untrusted, &[("X-Forwarded-User", "alice")]).await,
        401
    );
    // And a cookie means nothing in header mode.
    let cookie_server = Server::local(&[]);
    let cookie = cookie_server.new_identity().await;
    assert_eq!(untrusted.refusal(&cookie, "", None).await.0, 401);
}

#[tokio::test]
async fn token_mode_exchanges_a_token_for_a_cookie_and_never_echoes_it() {
    let dir = std::env::temp_dir().join(format!("termpool-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(&file, "# test users\nalice:alice-secret-token-123456\n").unwrap();
    let log = dir.join("server.log");
    let server = Server::start_with_stderr(
        &[
            "--shell",
            common::TEST_SHELL,
            "--identity-mode",
            "token",
            "--token-file",
            file.to_str().unwrap(),
        ],
        &[("RUST_LOG", "debug")],
        std::fs::File::create(&log).unwrap().into(),
    );
    // No token: the login form, and no WebSocket.
    let (status, _, body) = http_get(&server.addr, "/", &[]).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("<form method=post action=/login>"));
    assert_eq!(upgrade_status(&server, &[]).await, 401);

    // A wrong token: 401 and no cookie.
    let (status, headers, _) = http_get(&server.addr, "/?token=wrong-token-wrong-token", &[]).await;
    assert_eq!(status, 401);
    assert!(header(&headers, "set-cookie").is_none());

    // The right token: a cookie, and a redirect that drops the token from the URL.
    let (status, headers, _) = http_get(
        &server.addr,
        "/container-terminal?token=alice-secret-token-123456",
        &[],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/container-terminal"));
    let set_cookie = header(&headers, "set-cookie").unwrap();
    assert!(
        !set_cookie.contains("alice-secret"),
        "the token never goes into the cookie"
    );
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let mut c = server.connect_as(&cookie, "").await;
    c.ready().await;
    c.run("echo T$((1+1))T").await;
    c.expect_output("T2T").await;

    // An anonymous cookie (even one signed by this server's kind) is no token identity.
    let cookie_server = Server::local(&[]);
    let anonymous = cookie_server.new_identity().await;
    assert_eq!(server.refusal(&anonymous, "", None).await.0, 401);
    drop(c);
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("login refused"),
        "the log is being written: {logged}"
    );
    assert!(
        !logged.contains("alice-secret") && !logged.contains("wrong-token"),
        "{logged}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bad_identity_settings_stop_the_server_with_the_variable_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termpool"))
        .args([
            "--identity-mode",
            "token",
            "--token-file",
            "/nonexistent/tokens",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOKEN_FILE"));
}

/// `POST /login` of this site's own form: the status and the `Location` it answers with.
async fn log_in(server: &Server, form: &str) -> (u16, Option<String>) {
    let origin = format!("http://{}", server.addr);
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", origin.as_str()),
    ];
    let (status, got, _) =
        common::http_request(&server.addr, "POST", "/login", &headers, form.as_bytes()).await;
    (status, header(&got, "location").map(str::to_owned))
}

#[tokio::test]
async fn a_login_returns_to_the_page_it_came_from_and_never_elsewhere() {
    let server = Server::with_alice_token("next");
    let next_field = "<input type=hidden name=next value=\"/container-terminal\">";
    let (status, _, body) = http_get(&server.addr, "/container-terminal", &[]).await;
    assert_eq!(status, 200);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains(next_field), "{body}");
    // The form, as the browser submits it.
    let token = "token=alice-secret-token-123456";
    let back = log_in(&server, &format!("{token}&next=%2Fcontainer-terminal")).await;
    assert_eq!(back, (303, Some("/container-terminal".to_owned())));
    // Only the server's own pages: anything else lands on /.
    for next in [
        "https://evil.example",
        "//evil.example",
        "/%5Cevil.example",
        "https:evil.example",
        "/container-terminal.evil.example",
        "%2Fcontainer-terminal%2F..%2F..%2Fx",
        "",
    ] {
        let to = log_in(&server, &format!("{token}&next={}", next)).await;
        assert_eq!(to, (303, Some("/".to_owned())), "next={next}");
    }
    assert_eq!(log_in(&server, token).await, (303, Some("/".to_owned())));
    // A wrong token shows the form again, still on its way back.
    let origin = format!("http://{}", server.addr);
    let (status, _, body) = common::http_request(
        &server.addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", origin.as_str()),
        ],
        b"token=wrong-token-wrong-token&next=%2Fcontainer-terminal",
    )
    .await;
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains(next_field));
    // Another site's link with a token: the confirmation form goes back to the same page.
    let (_, _, body) = http_get(
        &server.addr,
        "/container-terminal?token=alice-secret-token-123456",
        &[("Sec-Fetch-Site", "cross-site")],
    )
    .await;
    assert!(String::from_utf8_lossy(&body).contains(next_field));
}
