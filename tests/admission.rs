//! Limits across identities, against the real server: the global session cap (`MAX_SESSIONS`,
//! 503) and new anonymous identities per client address per minute (429), which per-user limits
//! alone cannot give when anyone gets a fresh identity by sending no cookie.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{connect_with_headers, http_get, Frame, Server, WAIT};

/// The status and body of a plain `GET /ws` with `cookie`: what the page learns of a refusal.
async fn plain_get_of_ws(server: &Server, cookie: &str) -> (u16, String) {
    let (status, _, body) = http_get(&server.addr, "/ws", &[("Cookie", cookie)]).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_script_cannot_open_shells_under_ever_new_identities() {
    // The defaults: one identity per session, as a script that never keeps its cookie.
    let server = Server::local(&[]);
    let mut open = Vec::new();
    let (newcomer, (status, body)) = loop {
        let cookie = server.new_identity().await;
        match server.try_connect(&cookie, "", None).await {
            Ok(mut c) => {
                c.ready().await;
                open.push((cookie, c));
            }
            Err(refusal) => break (cookie, refusal),
        }
        assert!(open.len() < 50, "50 shells for one address, none refused");
    };
    assert_eq!(
        open.len(),
        10,
        "the default allows 10 new identities a minute"
    );
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("new users from your address"), "{body}");
    assert_eq!(plain_get_of_ws(&server, &newcomer).await, (429, body));
    // Identities already in use are no newcomers: their own limits apply, not this one.
    let (known, _) = &open[0];
    server.connect_as(known, "").await.ready().await;
}

/// Opens a session for a new identity, coming through the proxy with `forwarded_for`.
async fn newcomer_via(server: &Server, forwarded_for: &str) -> Result<(), u16> {
    let cookie = server.new_identity().await;
    let headers = [
        ("Cookie", cookie.as_str()),
        ("X-Forwarded-For", forwarded_for),
    ];
    match connect_with_headers(server, &headers).await {
        Ok(mut c) => {
            c.ready().await;
            Ok(())
        }
        Err((status, _)) => Err(status),
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_counts_apart() {
    let limit = ["--max-new-identities-per-address-per-minute", "2"];
    let proxied = Server::local(&[&limit[..], &["--trusted-proxies", "127.0.0.1"]].concat());
    assert_eq!(newcomer_via(&proxied, "203.0.113.7").await, Ok(()));
    // What the client wrote before the address the proxy appended changes nothing.
    assert_eq!(
        newcomer_via(&proxied, "198.51.100.1, 203.0.113.7").await,
        Ok(())
    );
    assert_eq!(
        newcomer_via(&proxied, "198.51.100.2, 203.0.113.7").await,
        Err(429)
    );
    assert_eq!(
        newcomer_via(&proxied, "203.0.113.8").await,
        Ok(()),
        "another client"
    );
    // An IPv6 client holds a whole block (IPV6_PREFIX_LEN, /56 by default): one budget.
    assert_eq!(newcomer_via(&proxied, "2001:db8:1:200::1").await, Ok(()));
    assert_eq!(newcomer_via(&proxied, "2001:db8:1:2ff::2").await, Ok(()));
    assert_eq!(newcomer_via(&proxied, "2001:db8:1:2aa::3").await, Err(429));
    assert_eq!(newcomer_via(&proxied, "2001:db8:1:300::1").await, Ok(()));

    // From a peer that is no trusted proxy the header is the client's own word: ignored.
    let direct = Server::local(&limit);
    assert_eq!(newcomer_via(&direct, "203.0.113.7").await, Ok(()));
    assert_eq!(newcomer_via(&direct, "203.0.113.8").await, Ok(()));
    assert_eq!(newcomer_via(&direct, "203.0.113.9").await, Err(429));
}

#[tokio::test]
async fn beyond_max_sessions_the_server_refuses_with_503() {
    let server = Server::local(&["--max-sessions", "3"]);
    let mut users = Vec::new();
    for _ in 0..3 {
        let cookie = server.new_identity().await;
        let mut c = server.connect_as(&cookie, "").await;
        let id = c.ready().await.session.into_owned();
        users.push((cookie, id, c));
    }
    // A dropped socket leaves its session waiting for a re-attach: it still counts.
    let (dropped, dropped_id, socket) = users.pop().unwrap();
    drop(socket);
    let newcomer = server.new_identity().await;
    let (status, body) = server.refusal(&newcomer, "", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("server is full"), "{body}");
    assert_eq!(plain_get_of_ws(&server, &newcomer).await, (503, body));
    assert_eq!(server.refusal(&users[0].0, "", None).await.0, 503);
    // Re-attaching is no new session.
    let resume = format!("session={dropped_id}");
    let mut back = server.connect_as(&dropped, &resume).await;
    assert!(back.ready().await.resumed);
    // A session that ends makes room.
    let (_, _, mut first) = users.remove(0);
    first.run("exit").await;
    while !matches!(first.next_frame(WAIT).await, Some(Frame::Closed(_)) | None) {}
    let mut admitted = server
        .connect_within(&newcomer, Duration::from_secs(5))
        .await;
    admitted.ready().await;
}

/// Runs the server with `env` until it exits (at most 10 s); its exit code and stderr.
fn start_with(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_termpool"))
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_limits_stop_the_server_naming_the_variable() {
    for (var, value) in [
        ("MAX_SESSIONS", "lots"),
        ("MAX_NEW_IDENTITIES_PER_ADDRESS_PER_MINUTE", "-1"),
        // Not header mode, but the list now matters in every mode.
        ("TRUSTED_PROXIES", "10.0.0.0/99"),
    ] {
        let (code, stderr) = start_with(&[(var, value)]);
        assert_eq!(
            code,
            Some(2),
            "{var}={value} must stop the server: {stderr}"
        );
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_termpool"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for shown in [
        "[env: MAX_SESSIONS=] [default: 1000]",
        "[env: MAX_NEW_IDENTITIES_PER_ADDRESS_PER_MINUTE=] [default: 10]",
    ] {
        assert!(help.contains(shown), "{shown} in {help}");
    }
}

/// Opens a session as `cookie` through the proxy with `forwarded_for`; the refusal's status and
/// body if refused.
async fn session_via(
    server: &Server,
    cookie: &str,
    forwarded_for: &str,
) -> Result<common::Client, (u16, String)> {
    let headers = [("Cookie", cookie), ("X-Forwarded-For", forwarded_for)];
    let mut c = connect_with_headers(server, &headers).await?;
    c.ready().await;
    Ok(c)
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_sessions_and_users() {
    let server = Server::local(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--max-sessions-per-address",
        "3",
        "--max-identities-per-address",
        "2",
        "--max-new-identities-per-address-per-minute",
        "0",
    ]);
    let (a, b, c) = (
        server.new_identity().await,
        server.new_identity().await,
        server.new_identity().await,
    );
    let here = "203.0.113.7";
    let _a1 = session_via(&server, &a, here).await.unwrap();
    let mut b1 = session_via(&server, &b, here).await.unwrap();
    let (status, body) = session_via(&server, &c, here).await.err().unwrap();
    assert_eq!(status, 429, "a third user from one address: {body}");
    assert!(body.contains("too many users from your address"), "{body}");
    let _a2 = session_via(&server, &a, here).await.unwrap();
    let (status, body) = session_via(&server, &a, here).await.err().unwrap();
    assert_eq!(status, 429, "a fourth session from one address: {body}");
    assert!(
        body.contains("too many live sessions from your address"),
        "{body}"
    );
    // The plain GET the page sends to learn why says the same.
    let (status, _, _) = http_get(
        &server.addr,
        "/ws",
        &[("Cookie", c.as_str()), ("X-Forwarded-For", here)],
    )
    .await;
    assert_eq!(status, 429);
    // Another address is not touched; an ended session gives its place back.
    let _c1 = session_via(&server, &c, "203.0.113.8").await.unwrap();
    // (A closed tab's session waits for a re-attach and still counts; an exited one does not.)
    b1.run("exit").await;
    let deadline = Instant::now() + WAIT;
    while session_via(&server, &c, here).await.is_err() {
        assert!(Instant::now() < deadline, "b's place was never given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ipv6_clients_are_one_address_per_configured_block() {
    let block = |len: &'static str| {
        Server::local(&[
            "--trusted-proxies",
            "127.0.0.1",
            "--max-identities-per-address",
            "1",
            "--ipv6-prefix-len",
            len,
        ])
    };
    for (len, same) in [("56", true), ("64", false)] {
        let server = block(len);
        let (a, b) = (server.new_identity().await, server.new_identity().await);
        let _held = session_via(&server, &a, "2001:db8:1:200::1").await.unwrap();
        let other = session_via(&server, &b, "2001:db8:1:2ff::1").await;
        assert_eq!(other.is_err(), same, "/{len}");
        // Another /48 is another client whatever the length.
        let _ = session_via(&server, &b, "2001:db8:2::1").await;
    }
    let (code, stderr) = start_with(&[("IPV6_PREFIX_LEN", "16")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("IPV6_PREFIX_LEN"), "{stderr}");
}

#[tokio::test]
async fn at_the_per_user_limit_a_new_tab_ends_the_oldest_closed_one() {
    let server = Server::local(&["--max-sessions-per-user", "2"]);
    let me = server.new_identity().await;
    let mut first = server.connect_as(&me, "").await;
    first.ready().await;
    let first_shell = first.shell_pid().await;
    let mut second = server.connect_as(&me, "").await;
    let second_id = second.ready().await.session.into_owned();
    let second_shell = second.shell_pid().await;
    // Both tabs open: a third is refused.
    assert_eq!(server.refusal(&me, "", None).await.0, 429);
    // Both closed (the first first): their shells wait for a re-attach, and still count.
    first.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    second.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(common::alive(&[first_shell, second_shell]).len(), 2);
    let (status, _) = plain_get_of_ws(&server, &me).await;
    assert_eq!(status, 400, "the page's probe is not told 429 either");
    let mut third = server.connect_as(&me, "").await;
    assert!(!third.ready().await.resumed);
    // The oldest closed tab was ended (hung up); the other can still be re-attached.
    let ended = common::eventually(WAIT, || common::alive(&[first_shell]).is_empty()).await;
    assert!(ended, "the oldest detached shell was not hung up");
    let mut back = server
        .connect_as(&me, &format!("session={second_id}"))
        .await;
    assert!(back.ready().await.resumed);
    assert_eq!(common::alive(&[second_shell]), [second_shell]);
    // With every session attached, the limit holds.
    assert_eq!(server.refusal(&me, "", None).await.0, 429);
}
