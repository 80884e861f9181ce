//! Attacks on identity against the real server: a cookie planted beside the user's own, a second
//! identity header, the `__Host-` cookie behind https, and cookies that outlive their token.

mod common;

use std::time::Duration;

use common::{connect_with_headers, header, http_get, Server, WAIT};

/// The identity cookie (`name=value`) a first visit gets with `headers`, and its attributes.
async fn first_visit(server: &Server, headers: &[(&str, &str)]) -> (String, String) {
    let (status, got, _) = http_get(&server.addr, "/", headers).await;
    assert_eq!(status, 200);
    let set = header(&got, "set-cookie").expect("an identity").to_owned();
    (set.split(';').next().unwrap().trim().to_owned(), set)
}

/// The user a session opened with these headers runs as, or the refusal.
async fn user_with(server: &Server, headers: &[(&str, &str)]) -> Result<String, (u16, String)> {
    let mut client = connect_with_headers(server, headers).await?;
    Ok(client.ready().await.user.into_owned())
}

#[tokio::test]
async fn a_planted_cookie_beside_the_users_own_is_refused_not_resolved_by_order() {
    let server = Server::local(&[]);
    let mine = server.new_identity().await;
    let planted = server.new_identity().await;
    let me = user_with(&server, &[("Cookie", &mine)]).await.unwrap();
    // What a sibling subdomain's `Domain=` cookie with a longer path looks like: sent first.
    for cookies in [format!("{planted}; {mine}"), format!("{mine}; {planted}")] {
        let (status, body) = user_with(&server, &[("Cookie", &cookies)])
            .await
            .unwrap_err();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("two termpool_id cookies"), "{body}");
        // The page says so too, and hands out no third identity.
        let (status, got, body) = http_get(&server.addr, "/", &[("Cookie", &cookies)]).await;
        assert_eq!(status, 400);
        assert!(header(&got, "set-cookie").is_none());
        assert!(String::from_utf8_lossy(&body).contains("clear this site"));
    }
    // Two Cookie headers are one cookie list.
    let split = [("Cookie", planted.as_str()), ("Cookie", mine.as_str())];
    let (status, _, body) = common::http_request(&server.addr, "GET", "/ws", &split, b"").await;
    assert!(String::from_utf8_lossy(&body).contains("two termpool_id cookies"));
    assert_eq!(status, 400);
    // The user's own cookie alone still is the user.
    assert_eq!(user_with(&server, &[("Cookie", &mine)]).await.unwrap(), me);
}

#[tokio::test]
async fn two_identity_headers_are_refused() {
    let server = Server::local(&[
        "--identity-mode",
        "header",
        "--trusted-proxies",
        "127.0.0.1",
    ]);
    let raw = |extra: &'static str| {
        let addr = server.addr.clone();
        async move {
            let mut headers = vec![("X-Forwarded-User", "alice")];
            if !extra.is_empty() {
                headers.push(("X-Forwarded-User", extra));
            }
            common::http_request(&addr, "GET", "/ws", &headers, b"").await
        }
    };
    // One header: only the missing upgrade is wrong (400 from the handshake, not identity).
    let (status, _, body) = raw("").await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(!body.contains("headers were sent"), "{status} {body}");
    let (status, _, body) = raw("mallory").await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("two x-forwarded-user headers were sent"),
        "{body}"
    );
    let (status, _, _) = raw("alice").await;
    assert_eq!(status, 400, "even the same name twice");
    assert!(user_with(&server, &[("X-Forwarded-User", "alice")])
        .await
        .is_ok());
}

#[tokio::test]
async fn behind_https_the_cookie_is_a_host_cookie_and_both_names_are_read() {
    let server = Server::local(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--max-sessions-per-user",
        "1",
    ]);
    let https = [("X-Forwarded-Proto", "https")];
    let (host_cookie, set) = first_visit(&server, &https).await;
    assert!(host_cookie.starts_with("__Host-termpool_id="), "{set}");
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(
        attrs.contains(&"Secure") && attrs.contains(&"Path=/"),
        "{set}"
    );
    assert!(!set.contains("Domain"), "{set}");
    // Plain http through the proxy: the plain name, as before.
    let (plain, _) = first_visit(&server, &[]).await;
    assert!(plain.starts_with("termpool_id="), "{plain}");

    // Which identity a request has shows in its per-user limit (one session each here).
    let mut held = server.connect_as(&host_cookie, "").await;
    held.ready().await;
    // Both names at once: the __Host- one wins (no other site can have set it).
    let both = format!("{plain}; {host_cookie}");
    let (status, body) = user_with(&server, &[("Cookie", &both)]).await.unwrap_err();
    assert_eq!(status, 429, "the __Host- identity, at its limit: {body}");
    user_with(&server, &[("Cookie", &plain)]).await.unwrap();
    // The duplicate rule holds per name.
    let twice = format!("{host_cookie}; {host_cookie}");
    assert_eq!(
        user_with(&server, &[("Cookie", &twice)])
            .await
            .unwrap_err()
            .0,
        400
    );
}

/// A token file in a directory of its own, removed when dropped.
struct TokenFile(std::path::PathBuf);

impl TokenFile {
    fn new(tag: &str, text: &str) -> TokenFile {
        let dir = std::env::temp_dir().join(format!("termpool-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = TokenFile(dir.join("tokens"));
        file.write(text);
        file
    }

    /// Rewrites the file in place.
    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// Logs in with `token`; the cookie, or the status.
async fn log_in(server: &Server, token: &str) -> Result<String, u16> {
    let (status, headers, _) = http_get(&server.addr, &format!("/?token={token}"), &[]).await;
    match header(&headers, "set-cookie") {
        Some(set) if status == 303 => Ok(set.split(';').next().unwrap().to_owned()),
        _ => Err(status),
    }
}

const OLD: &str = "alice-first-token-0000001";
const NEW: &str = "alice-second-token-000001";

#[tokio::test]
async fn rotating_or_removing_a_token_ends_the_cookies_issued_for_it() {
    let file = TokenFile::new(
        "rotate",
        &format!("alice:{OLD}\nbob:bob-token-1234567890ab\n"),
    );
    let server = Server::local(&[
        "--identity-mode",
        "token",
        "--token-file",
        file.0.to_str().unwrap(),
    ]);
    let old_cookie = log_in(&server, OLD).await.unwrap();
    let bob = log_in(&server, "bob-token-1234567890ab").await.unwrap();
    let mut live = server.connect_as(&old_cookie, "").await;
    live.ready().await;

    // Rotated: the file changed, so the next look-up reads it again.
    file.write(&format!("alice:{NEW}\nbob:bob-token-1234567890ab\n"));
    let (status, body) = server.refusal(&old_cookie, "", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(log_in(&server, OLD).await, Err(401));
    let new_cookie = log_in(&server, NEW).await.unwrap();
    server.connect_as(&new_cookie, "").await.ready().await;
    server.connect_as(&bob, "").await.ready().await;

    // Removed.
    file.write("bob:bob-token-1234567890ab\n");
    assert_eq!(server.refusal(&new_cookie, "", None).await.0, 401);
    server.connect_as(&bob, "").await.ready().await;
    // A file that does not parse leaves the last good tokens in force.
    file.write("this is not a token file");
    server.connect_as(&bob, "").await.ready().await;
}

#[tokio::test]
async fn sighup_reads_the_token_file_again() {
    let file = TokenFile::new("sighup", &format!("alice:{OLD}\n"));
    let mut server = Server::local(&[
        "--identity-mode",
        "token",
        "--token-file",
        file.0.to_str().unwrap(),
    ]);
    let cookie = log_in(&server, OLD).await.unwrap();
    // The same length, in place, and the old modification time: only a SIGHUP can tell.
    let modified = std::fs::metadata(&file.0).unwrap().modified().unwrap();
    file.write(&format!("alice:{NEW}\n"));
    let f = std::fs::File::options().write(true).open(&file.0).unwrap();
    f.set_modified(modified).unwrap();
    drop(f);
    server.connect_as(&cookie, "").await.ready().await;
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match server.try_connect(&cookie, "", None).await {
            Err((401, _)) => break,
            _ => assert!(std::time::Instant::now() < deadline, "SIGHUP had no effect"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log_in(&server, NEW).await.unwrap();
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "SIGHUP no longer stops the server"
    );
}
