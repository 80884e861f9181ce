//! What an operator sees and does, against the real server in local mode: the audit trail on
//! stderr, the admin API (from allowed and refused addresses), blocks that survive a restart,
//! refusals and open latency in /metrics, and the store's schema check at start.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{http_request, log_lines_with, Client, Frame, Server, WAIT};
use serde_json::Value;

const TOKEN: &str = "admin-token-0123456789abcdef";

/// A directory of its own for one test, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("termpool-ops-{tag}-{nanos}"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A local server with the admin API on, its store in `dir/data` and its log in `dir/log`.
fn admin_server(dir: &TempDir, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let token_file = dir.path("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let data = dir.path("data");
    let mut args = vec![
        "--shell",
        common::TEST_SHELL,
        "--data-dir",
        data.to_str().unwrap(),
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path("log"))
        .unwrap();
    let mut all = vec![("RUST_LOG", "warn,audit=info")];
    all.extend_from_slice(env);
    Server::start_with_stderr(&args, &all, Stdio::from(log))
}

/// An admin request: status and body (JSON when it is JSON, else the text as a JSON string).
async fn admin(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    admin_with(server, method, path, token, body, &[]).await
}

async fn admin_with(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let (status, _, bytes) =
        http_request(&server.addr, method, path, &headers, body.as_bytes()).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Waits until the session's socket is closed by the server (after an `exit` frame or not).
async fn expect_closed(client: &mut Client) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match client.next_frame(left).await {
            Some(Frame::Closed(_)) => return,
            None => panic!("the session was not ended"),
            Some(_) => {}
        }
    }
}

/// The identity hash /admin/users shows for the user of session `session_id`.
async fn identity_hash_of(server: &Server, session_id: &str) -> String {
    let (status, users) = admin(server, "GET", "/admin/users", Some(TOKEN), "").await;
    assert_eq!(status, 200, "{users}");
    let users = users["users"].as_array().unwrap().clone();
    let user = users
        .iter()
        .find(|u| {
            u["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == session_id)
        })
        .unwrap_or_else(|| panic!("session {session_id} not listed: {users:?}"));
    assert_eq!(user["live_sessions"], 1);
    assert_eq!(user["sessions"][0]["client"], "127.0.0.1");
    user["identity_hash"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sessions_and_refusals_are_audited_without_secrets() {
    let dir = TempDir::new("audit");
    let server = admin_server(&dir, &[], &[]);
    let cookie = server.new_identity().await;
    let mut client = server.connect_as(&cookie, "").await;
    let ready = client.ready().await;
    let session = ready.session.to_string();
    let account = ready.user.to_string();
    client.run("echo audited-$((6*7))").await;
    client.expect_output("audited-42").await;
    client.run("exit").await;
    expect_closed(&mut client).await;
    // A refusal: a cross-site page's upgrade.
    let (status, _) = server
        .refusal(&cookie, "", Some("http://evil.example"))
        .await;
    assert_eq!(status, 403);
    let log = dir.path("log");
    assert!(
        common::eventually(WAIT, || !log_lines_with(&log, "event=session_end")
            .is_empty())
        .await,
        "no session_end line"
    );
    let opened = log_lines_with(&log, "event=session_open");
    let opened = opened
        .iter()
        .find(|l| l.contains(&session))
        .expect("a session_open line with the session id");
    for field in [
        &format!(" account={account} "),
        " container=- ",
        " client=127.0.0.1",
        " time=",
        " identity=",
    ] {
        assert!(opened.contains(field), "{field:?} missing in {opened}");
    }
    assert!(
        opened.contains(" audit]"),
        "under the target audit: {opened}"
    );
    let ended = log_lines_with(&log, "event=session_end");
    let ended = ended.iter().find(|l| l.contains(&session)).unwrap();
    let number = |key: &str| -> f64 {
        let rest = &ended[ended.find(&format!(" {key}=")).unwrap() + key.len() + 2..];
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        number("bytes_in") >= "echo audited-$((6*7))\r".len() as f64,
        "{ended}"
    );
    assert!(number("bytes_out") >= "audited-42".len() as f64, "{ended}");
    assert!(number("duration_s") > 0.0, "{ended}");
    assert!(ended.contains(" exit=0"), "{ended}");
    let refused = log_lines_with(&log, "event=refused");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("status=403") && l.contains("reason=forbidden_origin")),
        "{refused:?}"
    );
    // Never a secret: not the cookie, not the identity inside it.
    let cookie_value = cookie.split_once('=').unwrap().1;
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in cookie_value.split('.').filter(|p| p.len() >= 8) {
        assert!(!text.contains(secret), "the log holds {secret:?}");
    }
}

#[tokio::test]
async fn blocks_refuse_clients_end_their_sessions_and_survive_a_restart() {
    let dir = TempDir::new("blocks");
    let server = admin_server(&dir, &[], &[]);
    let mallory = server.new_identity().await;
    let alice = server.new_identity().await;
    let mut m = server.connect_as(&mallory, "").await;
    let session = m.ready().await.session.to_string();
    let hash = identity_hash_of(&server, &session).await;
    assert_eq!(hash.len(), 64);

    // No token, a wrong one, a bad body: refused, nothing blocked.
    let block = format!(r#"{{"kind":"identity","value":"{hash}","reason":"crypto mining"}}"#);
    let (status, _) = admin(&server, "POST", "/admin/blocks", None, &block).await;
    assert_eq!(status, 401);
    let wrong = Some("admin-token-0123456789abcdeX");
    let (status, _) = admin(&server, "POST", "/admin/blocks", wrong, &block).await;
    assert_eq!(status, 401);
    for bad in [
        "{",
        r#"{"kind":"user","value":"x","reason":"r"}"#,
        r#"{"kind":"identity","value":"mallory","reason":"r"}"#,
        r#"{"kind":"address","value":"not-an-ip","reason":"r"}"#,
    ] {
        let (status, body) = admin(&server, "POST", "/admin/blocks", Some(TOKEN), bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (_, list) = admin(&server, "GET", "/admin/blocks", Some(TOKEN), "").await;
    assert_eq!(list["blocks"], serde_json::json!([]));

    // The block ends the live session and refuses the identity everywhere, with the reason.
    let (status, made) = admin(&server, "POST", "/admin/blocks", Some(TOKEN), &block).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["sessions_ended"], 1);
    assert_eq!(made["persistent"], true);
    expect_closed(&mut m).await;
    let (status, body) = server.refusal(&mallory, "", None).await;
    assert_eq!(status, 403);
    assert!(
        body.contains("blocked") && body.contains("crypto mining"),
        "{body}"
    );
    let (status, _, page) =
        common::http_get(&server.addr, "/", &[("Cookie", mallory.as_str())]).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&page).contains("crypto mining"));
    // Others are not touched.
    let mut a = server.connect_as(&alice, "").await;
    a.ready().await;
    a.close().await;

    // A restart keeps the block (the cookie key and the store are in DATA_DIR).
    drop(server);
    let server = admin_server(&dir, &[], &[]);
    let (_, list) = admin(&server, "GET", "/admin/blocks", Some(TOKEN), "").await;
    assert_eq!(list["blocks"][0]["value"], hash.as_str(), "{list}");
    assert_eq!(list["blocks"][0]["kind"], "identity");
    let (status, body) = server.refusal(&mallory, "", None).await;
    assert_eq!(
        (status, body.contains("crypto mining")),
        (403, true),
        "{body}"
    );

    // Unblocked, the identity is welcome again.
    let path = format!("/admin/blocks/identity/{hash}");
    let (status, _) = admin(&server, "DELETE", &path, Some(TOKEN), "").await;
    assert_eq!(status, 204);
    let (status, _) = admin(&server, "DELETE", &path, Some(TOKEN), "").await;
    assert_eq!(status, 404);
    let mut m = server.connect_as(&mallory, "").await;
    m.ready().await;

    // An address block (as a CIDR) refuses every client of the block, page and upgrade; the
    // admin API stays reachable to lift it.
    let block = r#"{"kind":"address","value":"127.0.0.0/8","reason":"abuse from this network"}"#;
    let (status, made) = admin(&server, "POST", "/admin/blocks", Some(TOKEN), block).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["sessions_ended"], 1);
    expect_closed(&mut m).await;
    let (status, _, page) = common::http_get(&server.addr, "/", &[]).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&page).contains("abuse from this network"));
    // A forwarding header from a client that is no trusted proxy does not move it out of the block.
    let elsewhere = [("X-Forwarded-For", "198.51.100.7")];
    let (status, _, _) = common::http_get(&server.addr, "/", &elsewhere).await;
    assert_eq!(status, 403);
    let (status, _) = server.refusal(&alice, "", None).await;
    assert_eq!(status, 403);
    let path = "/admin/blocks/address/127.0.0.0/8";
    let (status, _) = admin(&server, "DELETE", path, Some(TOKEN), "").await;
    assert_eq!(status, 204);
    let (status, _, _) = common::http_get(&server.addr, "/", &[]).await;
    assert_eq!(status, 200);
    let log = dir.path("log");
    let actions = log_lines_with(&log, "event=admin ");
    assert!(
        actions.iter().any(|l| l.contains(" action=block ")),
        "{actions:?}"
    );
    assert!(actions.iter().any(|l| l.contains(" action=unblock ")));
    assert!(!log_lines_with(&log, "reason=blocked").is_empty());
}

#[tokio::test]
async fn ending_a_user_hangs_up_its_sessions_and_ends_its_jobs() {
    let dir = TempDir::new("end");
    let server = admin_server(&dir, &[], &[]);
    let mut c = server.connect("").await;
    let session = c.ready().await.session.to_string();
    let hash = identity_hash_of(&server, &session).await;
    // A job that ignores the hang-up, as a miner would.
    let marker = format!("{}", 40_000 + std::process::id() % 20_000);
    c.run(&format!("nohup sleep {marker}.5 >/dev/null 2>&1 &"))
        .await;
    assert!(
        common::eventually(WAIT, || !common::pids_with_cmdline(&format!(
            "sleep {marker}.5"
        ))
        .is_empty())
        .await
    );
    let (status, body) = admin(
        &server,
        "POST",
        &format!("/admin/users/{hash}/end"),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions_ended"], 1);
    assert_eq!(body["processes_ended"], true);
    expect_closed(&mut c).await;
    assert!(
        common::eventually(WAIT, || common::pids_with_cmdline(&format!(
            "sleep {marker}.5"
        ))
        .is_empty())
        .await,
        "the job outlived its user's end"
    );
    let (status, _) = admin(&server, "POST", "/admin/users/nobody/end", Some(TOKEN), "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_admin_api_answers_only_allowed_addresses_and_is_off_by_default() {
    // Off without a token file: not there at all.
    let plain = Server::local(&[]);
    let (status, _) = admin(&plain, "GET", "/admin/users", Some(TOKEN), "").await;
    assert_eq!(status, 404);

    // The server is reached from 127.0.0.1, which is not in the allowed range: 403 even with
    // the right token.
    let dir = TempDir::new("allowed");
    let server = admin_server(&dir, &["--admin-allowed-addresses", "10.0.0.0/8"], &[]);
    let (status, body) = admin(&server, "GET", "/admin/users", Some(TOKEN), "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.as_str().unwrap().contains("ADMIN_ALLOWED_ADDRESSES"));
    drop(server);

    // Behind a trusted proxy, the client's address decides, not the proxy's loopback one.
    let server = admin_server(&dir, &["--trusted-proxies", "127.0.0.1"], &[]);
    let from = [("X-Forwarded-For", "203.0.113.9")];
    let (status, _) = admin_with(&server, "GET", "/admin/users", Some(TOKEN), "", &from).await;
    assert_eq!(status, 403);
    // A client that writes a loopback hop to the left of what its proxy appends gains nothing.
    let forged = [("X-Forwarded-For", "127.0.0.1, 203.0.113.9")];
    let (status, _) = admin_with(&server, "GET", "/admin/users", Some(TOKEN), "", &forged).await;
    assert_eq!(status, 403);
    let local = [("X-Forwarded-For", "127.0.0.1")];
    let (status, _) = admin_with(&server, "GET", "/admin/users", Some(TOKEN), "", &local).await;
    assert_eq!(status, 200);
    let log = dir.path("log");
    assert!(!log_lines_with(&log, "reason=admin_address").is_empty());
}

#[test]
fn a_short_admin_token_stops_the_start() {
    let dir = TempDir::new("short");
    let file = dir.path("token");
    std::fs::write(&file, "short\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termpool"))
        .args(["--port", "0", "--admin-token-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ADMIN_TOKEN_FILE") && err.contains("16"),
        "{err}"
    );
}

/// The value of the metric line that starts with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_refusals_by_reason_and_time_session_opening() {
    let server = Server::local(&["--max-sessions-per-user", "1"]);
    let cookie = server.new_identity().await;
    let mut first = server.connect_as(&cookie, "").await;
    first.ready().await;
    let mut second = server.connect("").await;
    second.ready().await;
    let (status, _) = server.refusal(&cookie, "", None).await;
    assert_eq!(status, 429);
    let (_, _, body) = common::http_get(&server.addr, "/metrics", &[]).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        metric(
            &text,
            r#"termpool_refusals_total{reason="too_many_sessions"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("# TYPE termpool_session_open_seconds histogram"));
    let count = metric(&text, "termpool_session_open_seconds_count").unwrap();
    assert_eq!(count, 2.0, "{text}");
    assert!(metric(&text, "termpool_session_open_seconds_sum").unwrap() > 0.0);
    let mut last = 0.0;
    let buckets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("termpool_session_open_seconds_bucket{le="))
        .collect();
    assert!(buckets.len() > 5, "{text}");
    for line in &buckets {
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v >= last, "buckets are cumulative: {line}");
        last = v;
    }
    assert!(buckets.last().unwrap().contains(r#"le="+Inf""#));
    assert_eq!(last, count);
    first.close().await;
    second.close().await;
}

/// SQL of the store as the release before versioning wrote it, with one user.
const UNVERSIONED_STORE: &str = "
PRAGMA journal_mode=WAL;
CREATE TABLE users (identity_hash TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE,
    uid INTEGER NOT NULL UNIQUE, container TEXT, last_seen INTEGER NOT NULL);
CREATE TABLE containers (slot INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, id TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO users VALUES ('h', 'uabc', 200000, 'c-0', 1000);
INSERT INTO meta VALUES ('next_uid', 200001);
";

fn user_version(path: &Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn the_server_upgrades_an_old_store_and_refuses_a_newer_one() {
    let dir = TempDir::new("schema");
    let data = dir.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = data.join("placements.sqlite");
    rusqlite::Connection::open(&store)
        .and_then(|c| c.execute_batch(UNVERSIONED_STORE))
        .unwrap();
    let server = admin_server(&dir, &[], &[]);
    assert!(user_version(&store) >= 2);
    let block = r#"{"kind":"address","value":"192.0.2.1","reason":"kept"}"#;
    let (status, _) = admin(&server, "POST", "/admin/blocks", Some(TOKEN), block).await;
    assert_eq!(status, 201);
    drop(server);
    let c = rusqlite::Connection::open(&store).unwrap();
    let kept: (String, i64, i64) = c
        .query_row("SELECT username, uid, last_activity FROM users", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(kept, ("uabc".to_string(), 200_000, 1000));

    // A store of a newer release: the server does not start, says why, and changes nothing.
    c.execute_batch("PRAGMA user_version = 999; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(c);
    let before = std::fs::read(&store).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termpool"))
        .args(["--port", "0", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("newer termpool") && err.contains("999"),
        "{err}"
    );
    assert_eq!(std::fs::read(&store).unwrap(), before);
}

#[tokio::test]
async fn a_refused_login_is_audited_without_its_token() {
    let dir = TempDir::new("login");
    let tokens = dir.path("tokens");
    std::fs::write(&tokens, format!("alice:{}\n", common::ALICE_TOKEN)).unwrap();
    let server = admin_server(
        &dir,
        &[
            "--identity-mode",
            "token",
            "--token-file",
            tokens.to_str().unwrap(),
        ],
        &[],
    );
    let guess = "token=guessed-token-0123456789";
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, _, _) =
        http_request(&server.addr, "POST", "/login", &headers, guess.as_bytes()).await;
    assert_eq!(status, 401);
    let log = dir.path("log");
    assert!(
        common::eventually(WAIT, || !log_lines_with(&log, "reason=login_token")
            .is_empty())
        .await,
        "no audit line for the refused login"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("guessed-token"), "the log holds the token");
    let (_, _, body) = common::http_get(&server.addr, "/metrics", &[]).await;
    let metrics = String::from_utf8(body).unwrap();
    assert_eq!(
        metric(&metrics, r#"termpool_refusals_total{reason="login_token"}"#),
        Some(1.0)
    );
}
