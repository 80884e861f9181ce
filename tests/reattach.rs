//! Sessions survive a dropped socket (`docs/protocol.md`, Reconnect), in both backends: the same shell,
//! its state, and its screen, including output written while nobody was attached.

mod common;

use std::time::{Duration, Instant};

use common::{alive, eventually, Client, Frame, Server, TestPool, WAIT};
use termpool::protocol::{ClientFrame, ErrorCode, PingId, Ready, ServerFrame};

/// Drops the socket without a close handshake, like a network blink or a killed tab.
fn drop_socket(c: Client) {
    drop(c);
}

/// Everything the server sends until `needle` shows up (screen snapshot and live output).
async fn screen_until(c: &mut Client, needle: &str) -> String {
    c.expect_output(needle).await
}

async fn reattach(
    server: &Server,
    cookie: &str,
    id: &str,
    query: &str,
) -> (Client, Ready<'static>) {
    let q = if query.is_empty() {
        format!("session={id}")
    } else {
        format!("session={id}&{query}")
    };
    let mut c = server.connect_as(cookie, &q).await;
    let ready = c.ready().await;
    (c, ready)
}

async fn shell_state_survives_a_drop(server: &Server) {
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let ready = c.ready().await;
    let id = ready.session.to_string();
    c.run("export X=42").await;
    c.sync().await;
    // Output written while detached must be on the screen at re-attach.
    c.run("(sleep 1; echo LATE$((1+1))) &").await;
    c.sync().await;
    drop_socket(c);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (mut c, ready) = reattach(server, &cookie, &id, "cols=100&rows=30").await;
    assert!(ready.resumed);
    assert_eq!(ready.session, id.as_str());
    screen_until(&mut c, "LATE2").await;
    c.run("echo V=$X=$(stty size)=").await;
    c.expect_output("V=42=30 100=").await;
}

async fn alternate_screen_is_restored(server: &Server) {
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "cols=80&rows=24").await;
    let id = c.ready().await.session.into_owned();
    // The echoed command line holds "%s", never "line two": only vim's screen does.
    c.run("printf 'line %s\\n' one two > /tmp/reattach-$$.txt; vim -u NONE /tmp/reattach-$$.txt")
        .await;
    c.expect_output("line two").await;
    c.send_bytes(b"ggAAPPENDED\x1b").await; // append on line 1, back to normal mode
    c.expect_output("APPENDED").await;
    drop_socket(c);

    let (mut c, ready) = reattach(server, &cookie, &id, "cols=80&rows=24").await;
    assert!(ready.resumed);
    let Some(Frame::Bytes(screen)) = c.next_frame(WAIT).await else {
        panic!("the screen comes right after ready");
    };
    let text = String::from_utf8_lossy(&screen);
    assert!(
        text.contains("\x1b[?1049h"),
        "vim alternate screen is re-entered: {text:?}"
    );
    assert!(
        text.contains("line oneAPPENDED"),
        "the buffer is shown: {text:?}"
    );
    // The cursor stays where vim left it: typing goes on at the same place.
    c.send_bytes(b"a!\x1b:wq\r").await;
    c.expect_output("written").await;
    c.run("cat /tmp/reattach-$$.txt").await;
    c.expect_output("line oneAPPENDED!").await;
}

async fn foreign_and_ended_ids_get_a_new_session(server: &Server) {
    let alice = server.new_identity().await;
    let mut a = server.connect_as(&alice, "").await;
    let alice_id = a.ready().await.session.into_owned();

    let mallory = server.new_identity().await;
    let (mut m, ready) = reattach(server, &mallory, &alice_id, "").await;
    assert!(!ready.resumed);
    assert_ne!(ready.session, alice_id.as_str());
    let err = m.next_error().await;
    assert_eq!(err.code, ErrorCode::SessionNotFound);
    // Mallory's shell is her own, and Alice's session is untouched.
    a.run("echo A$((1+1))A").await;
    a.expect_output("A2A").await;

    a.run("exit").await;
    assert!(matches!(a.next_server_frame().await, ServerFrame::Exit(_)));
    let (mut again, ready) = reattach(server, &alice, &alice_id, "").await;
    assert!(!ready.resumed);
    assert_eq!(again.next_error().await.code, ErrorCode::SessionNotFound);
    let (_, ready) = reattach(server, &alice, "not-a-session", "").await;
    assert!(!ready.resumed);
}

async fn a_second_socket_takes_the_session_over(server: &Server) {
    let cookie = server.new_identity().await;
    let mut first = server.connect_as(&cookie, "").await;
    let id = first.ready().await.session.into_owned();
    first.sync().await;
    let (mut second, _) = reattach(server, &cookie, &id, "").await;
    loop {
        match first.next_frame(WAIT).await {
            Some(Frame::Closed(code)) => {
                assert_eq!(code, Some(4001));
                break;
            }
            Some(Frame::Bytes(_)) | Some(Frame::Ping) => {}
            other => panic!("expected the first socket to be closed, got {other:?}"),
        }
    }
    second.run("echo T$((2+2))T").await;
    second.expect_output("T4T").await;
}

#[tokio::test]
async fn local_shell_state_survives_a_drop() {
    shell_state_survives_a_drop(&Server::local(&[])).await;
}

#[tokio::test]
async fn local_alternate_screen_is_restored() {
    alternate_screen_is_restored(&Server::local(&[])).await;
}

#[tokio::test]
async fn local_foreign_and_ended_ids_get_a_new_session() {
    foreign_and_ended_ids_get_a_new_session(&Server::local(&[])).await;
}

#[tokio::test]
async fn local_a_second_socket_takes_the_session_over() {
    a_second_socket_takes_the_session_over(&Server::local(&[])).await;
}

#[tokio::test]
async fn container_shell_state_survives_a_drop() {
    let pool = TestPool::new("re1");
    shell_state_survives_a_drop(&pool.server(1, 4, &[])).await;
}

#[tokio::test]
async fn container_alternate_screen_is_restored() {
    let pool = TestPool::new("re2");
    alternate_screen_is_restored(&pool.server(1, 4, &[])).await;
}

#[tokio::test]
async fn container_foreign_and_ended_ids_get_a_new_session() {
    let pool = TestPool::new("re3");
    foreign_and_ended_ids_get_a_new_session(&pool.server(1, 4, &[])).await;
}

#[tokio::test]
async fn the_grace_period_ends_with_a_hangup() {
    let server = Server::local(&["--reattach-grace-secs", "2"]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let id = c.ready().await.session.into_owned();
    let pid = c.shell_pid().await;
    drop_socket(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        alive(&[pid]),
        vec![pid],
        "alive while waiting for a re-attach"
    );
    let started = Instant::now();
    assert!(eventually(Duration::from_secs(10), || alive(&[pid]).is_empty()).await);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "not before the grace period"
    );
    let (mut c, ready) = reattach(&server, &cookie, &id, "").await;
    assert!(!ready.resumed);
    assert_eq!(c.next_error().await.code, ErrorCode::SessionNotFound);
}

/// Each drop starts a full grace period: the wait of an earlier drop, re-attached since, must not
/// hang the session up early.
#[tokio::test]
async fn a_second_drop_gets_its_own_grace_period() {
    let server = Server::local(&["--reattach-grace-secs", "3"]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let id = c.ready().await.session.into_owned();
    let pid = c.shell_pid().await;
    let first_drop = Instant::now();
    drop_socket(c);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (c, ready) = reattach(&server, &cookie, &id, "").await;
    assert!(ready.resumed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second_drop = Instant::now();
    drop_socket(c);
    // Past the first drop's grace period, well inside the second's.
    tokio::time::sleep(
        (first_drop + Duration::from_millis(4000)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert_eq!(alive(&[pid]), vec![pid], "hung up by the first drop's wait");
    assert!(eventually(Duration::from_secs(10), || alive(&[pid]).is_empty()).await);
    assert!(second_drop.elapsed() >= Duration::from_millis(2500));
}

#[tokio::test]
async fn grace_zero_hangs_up_at_once() {
    let server = Server::local(&["--reattach-grace-secs", "0"]);
    let mut c = server.connect("").await;
    c.ready().await;
    let pid = c.shell_pid().await;
    drop_socket(c);
    assert!(eventually(Duration::from_secs(3), || alive(&[pid]).is_empty()).await);
}

#[tokio::test]
async fn a_reattached_session_answers_at_once() {
    let server = Server::local(&[]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let id = c.ready().await.session.into_owned();
    c.sync().await;
    drop_socket(c);
    let (mut c, ready) = reattach(&server, &cookie, &id, "").await;
    assert!(ready.resumed);
    let id = PingId::new("1").unwrap();
    c.send_frame(&ClientFrame::Ping { id }).await;
    loop {
        if let ServerFrame::Pong(_) = c.next_server_frame().await {
            break;
        }
    }
}

/// Idle reaping: a `nohup` job survives the hang-up, but not the account's idle time. `tag` tells
/// the jobs of tests running at once apart: container processes are visible on the host too.
async fn idle_accounts_are_reaped(
    server: &Server,
    tag: char,
    file: &str,
    still_running: impl Fn(&str) -> bool,
) {
    let mut c = server.connect("").await;
    c.ready().await;
    let marker = format!("{}", 30000 + std::process::id() % 30000);
    c.run(&format!(
        "nohup sleep {marker}{tag} >/dev/null 2>&1 & echo kept > {file}; echo N$((1))N"
    ))
    .await;
    c.expect_output("N1N").await;
    let job = format!("sleep {marker}{tag}");
    // Hang up only once nohup has made the job immune (it runs `sleep` only after that).
    assert!(
        eventually(WAIT, || still_running(&job)).await,
        "the job started"
    );
    c.close().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        still_running(&job),
        "a nohup job outlives the terminal's hang-up"
    );
    assert!(
        eventually(Duration::from_secs(15), || !still_running(&job)).await,
        "the idle account's leftover job was ended"
    );
}

#[tokio::test]
async fn local_idle_accounts_are_reaped() {
    let server = Server::local(&["--reattach-grace-secs", "0", "--idle-reap-secs", "3"]);
    let file = std::env::temp_dir().join(format!("termpool-reaped-{}", std::process::id()));
    let file = file.to_string_lossy().into_owned();
    // `sleep ...` itself, not the `nohup sleep ...` that has not made it immune yet.
    let running = |job: &str| {
        common::pids_with_cmdline(job).iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        })
    };
    idle_accounts_are_reaped(&server, '7', &file, running).await;
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "kept");
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test]
async fn container_idle_accounts_are_reaped_and_files_stay() {
    let pool = TestPool::new("reap");
    let server = pool.server(
        1,
        4,
        &["--reattach-grace-secs", "0", "--idle-reap-secs", "3"],
    );
    let container = format!("{}-0", pool.prefix);
    let c2 = container.clone();
    idle_accounts_are_reaped(&server, '8', "reaped.txt", move |job| {
        let top = TestPool::docker(&["top", &c2, "-eo", "pid,args"]);
        let args = |l: &str| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
        top.lines().any(|l| args(l) == job)
    })
    .await;
    let found = TestPool::docker(&[
        "exec",
        &container,
        "sh",
        "-c",
        "cat /workspace/*/reaped.txt",
    ]);
    assert_eq!(found.trim(), "kept", "files stay");
}

#[tokio::test]
async fn sigterm_closes_sessions_with_a_reason_and_hangs_them_up() {
    let mut server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    let pid = c.shell_pid().await;
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
    let err = c.next_error().await;
    assert!(err.message.contains("shutting down"), "{err:?}");
    loop {
        match c.next_frame(WAIT).await {
            Some(Frame::Closed(code)) => {
                assert_eq!(code, Some(1001));
                break;
            }
            Some(Frame::Bytes(_)) | Some(Frame::Ping) => {}
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server stops within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit: {status:?}");
    assert!(eventually(Duration::from_secs(5), || alive(&[pid]).is_empty()).await);
}
