//! The workspace endpoints of issue #17 against the real server in local mode, over plain HTTP as
//! the page calls them: who am I, the session list, ending a session, access keys, uploads, the
//! `download` command and BASE_PATH.

mod common;

use std::time::Duration;

use common::{header, http_request, Client, Server};
use serde_json::Value;

/// One API call as `cookie`, from the server's own origin unless `extra` says otherwise.
async fn call(
    server: &Server,
    method: &str,
    path: &str,
    cookie: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Value) {
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if !cookie.is_empty() {
        headers.push(("Cookie", cookie));
    }
    let (status, headers, body) = http_request(&server.addr, method, path, &headers, body).await;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, headers, json)
}

async fn get(server: &Server, path: &str, cookie: &str) -> (u16, Value) {
    let (status, _, json) = call(server, "GET", path, cookie, &[], b"").await;
    (status, json)
}

fn me() -> String {
    String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned()
}

#[tokio::test]
async fn whoami_needs_an_identity_and_the_own_origin() {
    let server = Server::local(&[]);
    let cookie = server.new_identity().await;
    let (status, json) = get(&server, "/api/whoami", "").await;
    assert_eq!(status, 401);
    assert!(json["error"].as_str().unwrap().contains("identity"));
    let foreign = [("Origin", "http://evil.example")];
    let (status, _, json) = call(&server, "GET", "/api/whoami", &cookie, &foreign, b"").await;
    assert_eq!(status, 403, "{json}");
    let (status, json) = get(&server, "/api/whoami", &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(json["user"], me());
    assert_eq!(json["mode"], "cookie");
    assert_eq!(json["access_key"], false);
}

#[tokio::test]
async fn sessions_are_listed_to_their_owner_and_ended_by_them() {
    let server = Server::local(&[]);
    let cookie = server.new_identity().await;
    let mut client = server.connect_as(&cookie, "cols=100&rows=30").await;
    let id = client.ready().await.session.into_owned();
    client.sync().await;
    client.run("sleep 300").await;
    let listed = || async {
        let (status, json) = get(&server, "/api/sessions", &cookie).await;
        assert_eq!(status, 200, "{json}");
        json
    };
    let mut json = listed().await;
    for _ in 0..50 {
        if json["sessions"][0]["command"] == "sleep" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        json = listed().await;
    }
    assert_eq!(json["user"], me());
    assert_eq!(json["limit"], 10);
    let session = &json["sessions"][0];
    assert_eq!(json["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(session["id"], id.as_str());
    assert_eq!(
        (session["cols"].as_u64(), session["rows"].as_u64()),
        (Some(100), Some(30))
    );
    assert_eq!(session["attached"], true);
    assert_eq!(session["command"], "sleep", "the foreground program");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!(
        now.as_secs()
            .abs_diff(session["opened_at"].as_u64().unwrap())
            < 60
    );

    // Another user sees none of it and cannot end it.
    let other = server.new_identity().await;
    let (_, theirs) = get(&server, "/api/sessions", &other).await;
    assert_eq!(theirs["sessions"], serde_json::json!([]));
    let path = format!("/api/sessions/{id}");
    let (status, _, json) = call(&server, "DELETE", &path, &other, &[], b"").await;
    assert_eq!(status, 404, "{json}");

    // Detached, it is still listed, as not attached.
    client.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(listed().await["sessions"][0]["attached"], false);

    // Ending it needs the own origin and a same-site request.
    for refused in [
        [("Origin", "http://evil.example")],
        [("Sec-Fetch-Site", "cross-site")],
    ] {
        let (status, _, _) = call(&server, "DELETE", &path, &cookie, &refused, b"").await;
        assert_eq!(status, 403);
    }
    let (status, _, _) = call(&server, "DELETE", &path, &cookie, &[], b"").await;
    assert_eq!(status, 204);
    let mut gone = false;
    for _ in 0..50 {
        if listed().await["sessions"] == serde_json::json!([]) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the ended session left the list");
    let (status, _, _) = call(&server, "DELETE", &path, &cookie, &[], b"").await;
    assert_eq!(status, 404);
    let mut again = server.connect_as(&cookie, &format!("session={id}")).await;
    let ready = again.ready().await;
    assert!(!ready.resumed, "the ended session cannot be re-attached");
    again.close().await;
}

/// The value of the `Set-Cookie` a response carries, as a `Cookie` header.
fn cookie_of(headers: &[(String, String)]) -> String {
    let set = header(headers, "set-cookie").expect("a Set-Cookie");
    set.split(';').next().unwrap().trim().to_owned()
}

#[tokio::test]
async fn an_access_key_carries_the_account_to_another_browser() {
    let server = Server::local(&[]);
    let first = server.new_identity().await;
    let mut client = server.connect_as(&first, "").await;
    let id = client.ready().await.session.into_owned();
    let (status, _, json) = call(&server, "POST", "/api/access-key", &first, &[], b"").await;
    assert_eq!(status, 200, "{json}");
    let key = json["key"].as_str().unwrap().to_owned();
    assert!(key.len() >= 43 && key.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        get(&server, "/api/whoami", &first).await.1["access_key"],
        true
    );

    // A fresh browser redeems it and is now that account, with its sessions.
    let second = server.new_identity().await;
    let body = serde_json::json!({ "key": key }).to_string();
    let (status, headers, json) = call(
        &server,
        "POST",
        "/api/access-key/redeem",
        &second,
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["user"], me());
    let set = header(&headers, "set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let carried = cookie_of(&headers);
    let (_, listed) = get(&server, "/api/sessions", &carried).await;
    assert_eq!(listed["sessions"][0]["id"], id.as_str());
    assert_eq!(
        get(&server, "/api/whoami", &carried).await.1["access_key"],
        true
    );

    // A new key ends the old one.
    let (_, _, json) = call(&server, "POST", "/api/access-key", &carried, &[], b"").await;
    let replacement = json["key"].as_str().unwrap().to_owned();
    assert_ne!(replacement, key);
    let (status, _, json) = call(
        &server,
        "POST",
        "/api/access-key/redeem",
        &second,
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(json["error"], "unknown or replaced access key");
    let (status, _, _) = call(
        &server,
        "POST",
        "/api/access-key/redeem",
        &second,
        &[],
        b"{",
    )
    .await;
    assert_eq!(status, 400);

    // Guessing is cut short per client address.
    let mut statuses = Vec::new();
    for i in 0..12 {
        let guess = format!("{{\"key\":\"{i:064}\"}}");
        let (status, _, _) = call(
            &server,
            "POST",
            "/api/access-key/redeem",
            &second,
            &[],
            guess.as_bytes(),
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Nor may another site make or redeem keys.
    let foreign = [("Origin", "http://evil.example")];
    let (status, _, _) = call(&server, "POST", "/api/access-key", &first, &foreign, b"").await;
    assert_eq!(status, 403);
    client.close().await;
}

#[tokio::test]
async fn access_keys_are_a_cookie_mode_thing() {
    let server = Server::with_alice_token("keys");
    let (status, _, json) = call(&server, "POST", "/api/access-key", "", &[], b"").await;
    assert_eq!(status, 404, "{json}");
}

/// A new session of `cookie` whose shell has moved into `dir` (where uploads land), and its id.
async fn session_in(server: &Server, cookie: &str, dir: &std::path::Path) -> (Client, String) {
    let mut client = server.connect_as(cookie, "").await;
    let id = client.ready().await.session.into_owned();
    client.run(&format!("cd {}", dir.display())).await;
    client.sync().await;
    (client, id)
}

/// Uploads `body` as `name` into session `id`.
async fn upload(server: &Server, cookie: &str, id: &str, name: &str, body: &[u8]) -> (u16, Value) {
    let name: String = url_escape(name);
    let path = format!("/api/upload?session={id}&name={name}");
    let (status, _, json) = call(server, "POST", &path, cookie, &[], body).await;
    (status, json)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn uploads_land_in_the_shells_directory_and_never_overwrite() {
    let server = Server::local(&["--max-upload-mb", "1"]);
    let cookie = server.new_identity().await;
    let dir = std::env::temp_dir().join(format!("termpool-upload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut client, id) = session_in(&server, &cookie, &dir).await;

    let content: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let (status, json) = upload(&server, &cookie, &id, "data file.bin", &content).await;
    assert_eq!(status, 201, "{json}");
    let written = dir.join("data file.bin");
    assert_eq!(json["path"], written.display().to_string());
    assert_eq!(std::fs::read(&written).unwrap(), content);
    client.run("ls -l && echo LS=$((6*7))").await;
    let listing = client.expect_output("LS=42").await;
    assert!(listing.contains("data file.bin"), "{listing}");

    // Never over an existing file, nor through a symlink pointing out of the directory.
    let (status, json) = upload(&server, &cookie, &id, "data file.bin", b"other").await;
    assert_eq!(
        (status, json["error"].as_str()),
        (409, Some("data file.bin already exists"))
    );
    assert_eq!(std::fs::read(&written).unwrap(), content);
    let outside = std::env::temp_dir().join(format!("termpool-outside-{}", std::process::id()));
    let _ = std::fs::remove_file(&outside);
    std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
    let (status, _) = upload(&server, &cookie, &id, "link", b"planted").await;
    assert_eq!(status, 409);
    assert!(!outside.exists(), "nothing was written through the symlink");

    for bad in ["../escape", "a/b", "..", "", &"n".repeat(256), "nul\0byte"] {
        let (status, json) = upload(&server, &cookie, &id, bad, b"x").await;
        assert_eq!(status, 400, "{bad:?}: {json}");
    }
    assert!(!dir.parent().unwrap().join("escape").exists());
    let (status, _) = upload(&server, &cookie, &id, "big", &vec![0u8; (1 << 20) + 1]).await;
    assert_eq!(status, 413);
    assert!(!dir.join("big").exists(), "no partial file");
    let (status, _) = upload(&server, &cookie, "no-such-session", "x", b"x").await;
    assert_eq!(status, 404);
    let other = server.new_identity().await;
    let (status, _) = upload(&server, &other, &id, "x", b"x").await;
    assert_eq!(
        status, 404,
        "another user's session is no session of theirs"
    );
    let path = format!("/api/upload?session={id}&name=nolength");
    let (status, _, _) = call(&server, "POST", &path, &cookie, &[], b"").await;
    assert_eq!(status, 411);
    let foreign = [("Origin", "http://evil.example")];
    let path = format!("/api/upload?session={id}&name=foreign");
    let (status, _, _) = call(&server, "POST", &path, &cookie, &foreign, b"x").await;
    assert_eq!(status, 403);
    assert!(!dir.join("foreign").exists());
    client.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts an upload of `name` announced as 100000 bytes and sends only its first 1000: the
/// server holds it under way until the connection closes.
async fn hold_upload(server: &Server, cookie: &str, id: &str, name: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut raw = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let head = format!(
        "POST /api/upload?session={id}&name={name} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\
         Content-Length: 100000\r\n\r\n",
        server.addr
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&[1; 1000]).await.unwrap();
    raw
}

/// Waits until `cond` holds, for at most 10 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("waited 10 s for {what}");
}

/// A stranger holding uploads open (each keeps a process in their container until its body has
/// come) meets a cap: the upload past it is refused with 429, other users upload on, and a
/// place comes back when an upload ends.
#[tokio::test]
async fn uploads_under_way_at_once_are_capped_per_user() {
    let server = Server::local(&["--max-uploads-per-user", "2"]);
    let cookie = server.new_identity().await;
    let dir = std::env::temp_dir().join(format!("termpool-held-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (client, id) = session_in(&server, &cookie, &dir).await;

    let first = hold_upload(&server, &cookie, &id, "held1").await;
    let _second = hold_upload(&server, &cookie, &id, "held2").await;
    // Each is under way once its file exists.
    until("both held uploads to begin", || {
        dir.join("held1").exists() && dir.join("held2").exists()
    })
    .await;
    let (status, json) = upload(&server, &cookie, &id, "third", b"x").await;
    assert_eq!(status, 429, "{json}");
    assert_eq!(
        json["error"],
        "2 uploads of yours are under way: wait for one to finish"
    );
    assert!(!dir.join("third").exists());

    // Another user is not held back by this one's uploads.
    let other = server.new_identity().await;
    let (theirs, their_id) = session_in(&server, &other, &dir).await;
    let (status, json) = upload(&server, &other, &their_id, "theirs", b"y").await;
    assert_eq!(status, 201, "{json}");
    assert!(dir.join("theirs").exists());

    // An upload that breaks off gives its place back.
    drop(first);
    until("the broken-off upload to be removed", || {
        !dir.join("held1").exists()
    })
    .await;
    let (status, json) = upload(&server, &cookie, &id, "third", b"x").await;
    assert_eq!(status, 201, "{json}");
    client.close().await;
    theirs.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_full_disk_is_a_507_and_leaves_no_partial_file() {
    let dir = std::env::temp_dir().join(format!("termpool-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "this test mounts a small tmpfs (needs root)");
    let server = Server::local(&[]);
    let cookie = server.new_identity().await;
    let (client, id) = session_in(&server, &cookie, &dir).await;
    let (status, json) = upload(&server, &cookie, &id, "huge", &vec![7u8; 200_000]).await;
    client.close().await;
    let left = dir.join("huge").exists();
    drop(server);
    // Lazily: a shell of the server may still be leaving the directory.
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&dir)
        .status();
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(
        (status, json["error"].as_str()),
        (507, Some("Disk quota exceeded"))
    );
    assert!(!left, "the partial file is removed");
}

#[tokio::test]
async fn download_writes_the_iterm2_file_sequence() {
    let server = Server::local(&["--max-download-mb", "1"]);
    let mut client = server.connect("").await;
    client.ready().await;
    let dir = std::env::temp_dir().join(format!("termpool-download-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let content: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(dir.join("report.bin"), &content).unwrap();
    std::fs::write(dir.join("big.bin"), vec![0u8; (1 << 20) + 1]).unwrap();
    client
        .run(&format!("cd {} && download report.bin", dir.display()))
        .await;
    let name = base64(b"report.bin");
    let expected = format!(
        "\x1b]1337;File=name={name};size={};inline=0:{}\x07",
        content.len(),
        base64(&content)
    );
    client.expect_bytes(expected.as_bytes()).await;
    client.run("download big.bin; echo STATUS=$?").await;
    let out = client.expect_output("STATUS=1").await;
    assert!(out.contains("more than the limit of 1 MiB"), "{out}");
    client.run("download missing; echo STATUS=$?").await;
    client.expect_output("not a readable file").await;
    client.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn download_is_there_in_a_login_shell_whose_profile_sets_path() {
    let server = Server::start(&["--shell", "/bin/bash -l"], &[]);
    let mut client = server.connect("").await;
    client.ready().await;
    client
        .run("cd /tmp && printf 'hi' > termpool-login-dl && download termpool-login-dl")
        .await;
    let expected = format!(
        "\x1b]1337;File=name={};size=2;inline=0:aGk=\x07",
        base64(b"termpool-login-dl")
    );
    client.expect_bytes(expected.as_bytes()).await;
    client.close().await;
}

#[tokio::test]
async fn token_login_stays_under_the_base_path() {
    let dir = std::env::temp_dir().join(format!("termpool-base-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(&file, "alice:alice-secret-token-123456\n").unwrap();
    let args = [
        "--identity-mode",
        "token",
        "--token-file",
        file.to_str().unwrap(),
    ];
    let server = Server::local(&[&args[..], &["--base-path", "/terminal/"]].concat());
    std::fs::remove_dir_all(&dir).unwrap();
    let (status, _, form) = http_request(&server.addr, "GET", "/terminal/", &[], b"").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&form).contains("action=/terminal/login"));
    let path = "/terminal/?token=alice-secret-token-123456";
    let (status, headers, _) = http_request(&server.addr, "GET", path, &[], b"").await;
    assert_eq!(
        (status, header(&headers, "location")),
        (303, Some("/terminal/"))
    );
    let cookie = cookie_of(&headers);
    let (status, json) = get(&server, "/terminal/api/whoami", &cookie).await;
    assert_eq!((status, json["mode"].as_str()), (200, Some("token")));
}

/// Standard base64 with padding, as coreutils' `base64` writes it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn everything_lives_under_the_base_path() {
    let server = Server::local(&["--base-path", "/terminal"]);
    let (status, headers, _) = http_request(&server.addr, "GET", "/terminal", &[], b"").await;
    assert_eq!(status, 308);
    assert_eq!(header(&headers, "location"), Some("/terminal/"));
    let (status, headers, page) = http_request(&server.addr, "GET", "/terminal/", &[], b"").await;
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&page);
    assert!(
        !page.contains("\"/assets/"),
        "assets are named below the base path"
    );
    let cookie = cookie_of(&headers);
    for outside in ["/", "/ws", "/api/whoami", "/assets/app.js"] {
        let (status, _, _) = http_request(&server.addr, "GET", outside, &[], b"").await;
        assert_eq!(status, 404, "{outside}");
    }
    let (status, json) = get(&server, "/terminal/api/whoami", &cookie).await;
    assert_eq!(status, 200, "{json}");
    let (status, _, _) = http_request(&server.addr, "GET", "/terminal/healthz", &[], b"").await;
    assert_eq!(status, 200);
    let mut client = server
        .try_connect_path("/terminal/ws", &cookie, "", None)
        .await
        .unwrap_or_else(|(s, b)| panic!("{s} {b}"));
    client.ready().await;
    client.run("echo BASE=$((40+2))").await;
    client.expect_output("BASE=42").await;
    client.close().await;
}

/// The directory holding the local shells' `download` command is the server's own: removed when
/// it stops, and a directory left by a server that was killed is removed by the next one's start.
#[test]
fn the_download_commands_directory_is_removed_when_the_server_stops() {
    let tmp =
        std::env::temp_dir().join(format!("termpool-tmpdir-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&tmp).unwrap();
    let gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    drop(gone.wait_with_output());
    let stale = tmp.join(format!("termpool-tools-{dead_pid}-0123abcd"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("download"), "left behind").unwrap();
    let tools_of = |pid: u32| {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&format!("termpool-tools-{pid}-"))
            })
            .count()
    };

    let tmp_env = tmp.display().to_string();
    let mut server = Server::start(&["--shell", "/bin/sh"], &[("TMPDIR", tmp_env.as_str())]);
    assert!(
        !stale.exists(),
        "a dead server's directory is left at start"
    );
    let pid = server.pid();
    assert_eq!(tools_of(pid), 1, "the server installs its commands");
    // SAFETY: kill only sends a signal to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert!(status.success(), "a stop on SIGTERM: {status:?}");
    assert_eq!(tools_of(pid), 0, "the stopped server's directory is left");
    std::fs::remove_dir_all(&tmp).unwrap();
}
