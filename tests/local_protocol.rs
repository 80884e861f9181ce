//! `docs/protocol.md` against the real server in local mode: a real bash on a real PTY, driven over
//! a real WebSocket from 127.0.0.1.

mod common;

use std::time::Duration;

use common::{
    alive, children_of, eventually, pids_with_cmdline, Frame, Server, MANY_SESSIONS, WAIT,
};
use md5::{Digest, Md5};
use termpool::protocol::{ClientFrame, ErrorCode, Exit, PingId, Pong, ServerFrame};

#[tokio::test]
async fn ready_comes_first_with_the_requested_size() {
    let server = Server::local(&[]);
    let mut c = server.connect("cols=100&rows=30").await;
    let ready = c.ready().await;
    assert_eq!(ready.protocol, 1);
    assert_eq!(ready.mode, "local");
    assert!(!ready.resumed);
    assert_eq!(ready.container, None);
    assert_eq!((ready.cols, ready.rows), (100, 30));
    assert!(uuid_like(&ready.session));
    assert!(!ready.user.is_empty());
    // The TTY had this size from the start: no resize raced the first prompt.
    c.run("echo SIZE=$(stty size)=").await;
    c.expect_output("SIZE=30 100=").await;
}

#[tokio::test]
async fn default_size_is_80x24() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    let ready = c.ready().await;
    assert_eq!((ready.cols, ready.rows), (80, 24));
    c.run("echo SIZE=$(stty size)=").await;
    c.expect_output("SIZE=24 80=").await;
}

#[tokio::test]
async fn bad_initial_sizes_are_refused_before_the_upgrade() {
    let server = Server::local(&[]);
    let cookie = server.new_identity().await;
    for query in [
        "cols=0",
        "rows=1001",
        "cols=abc",
        "cols=-5&rows=10",
        "rows=99999999999",
    ] {
        let err = server.try_connect(&cookie, query, None).await.err();
        assert_eq!(err.map(|e| e.0), Some(400), "{query}");
    }
}

#[tokio::test]
async fn resize_changes_the_tty_and_signals_the_program() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.resize_expecting_winch(120, 40).await;
    c.run("echo SIZE=$(stty size)=").await;
    c.expect_output("SIZE=40 120=").await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_session_goes_on() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    let cases = [
        ("not json", ErrorCode::BadRequest),
        (r#"{"type":"teleport"}"#, ErrorCode::BadRequest),
        (r#"{"type":"input"}"#, ErrorCode::BadRequest),
        (
            r#"{"type":"resize","cols":"wide","rows":2}"#,
            ErrorCode::BadRequest,
        ),
        (
            r#"{"type":"resize","cols":0,"rows":24}"#,
            ErrorCode::ResizeRefused,
        ),
        (
            r#"{"type":"resize","cols":80,"rows":1001}"#,
            ErrorCode::ResizeRefused,
        ),
        (
            r#"{"type":"resize","cols":-3,"rows":10}"#,
            ErrorCode::ResizeRefused,
        ),
    ];
    for (text, code) in cases {
        c.send_text(text).await;
        let error = c.next_error().await;
        assert_eq!(error.code, code, "{text}");
        assert!(!error.message.is_empty());
    }
    c.run("echo SIZE=$(stty size)=").await;
    c.expect_output("SIZE=24 80=").await;
}

#[tokio::test]
async fn text_input_frames_type_like_binary_ones() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    let data = "echo T$((2*3))X\r".into();
    c.send_frame(&ClientFrame::Input { data }).await;
    c.expect_output("T6X").await;
}

#[tokio::test]
async fn ping_is_answered_with_the_same_id() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    for id in ["7", r#""abc""#, r#"{"nested":[1,2]}"#, "null"] {
        let id = PingId::new(id).unwrap();
        c.send_frame(&ClientFrame::Ping { id: id.clone() }).await;
        let pong = c.next_server_frame().await;
        assert_eq!(pong, ServerFrame::Pong(Pong { id }));
    }
    // Ids no 64-bit number holds come back digit for digit, not as a float.
    for id in [
        "123456789012345678901234567890",
        "-18446744073709551617",
        "0.1000000000000000000001",
    ] {
        c.send_text(&format!(r#"{{"type":"ping","id":{id}}}"#))
            .await;
        assert_eq!(
            c.next_text().await,
            format!(r#"{{"type":"pong","id":{id}}}"#)
        );
    }
}

#[tokio::test]
async fn exit_reports_the_code_and_closes_with_1000() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.run("exit 7").await;
    let exit = c.next_server_frame().await;
    assert_eq!(exit, ServerFrame::Exit(Exit { code: Some(7) }));
    match c.next_frame(WAIT).await {
        Some(Frame::Closed(code)) => assert_eq!(code, Some(1000)),
        other => panic!("expected close 1000, got {other:?}"),
    }
}

#[tokio::test]
async fn origin_must_be_this_server_or_allowed() {
    let server = Server::local(&["--allowed-origins", "https://term.example.org"]);
    let cookie = server.new_identity().await;
    let own = format!("http://{}", server.addr);
    let refused = server
        .try_connect(&cookie, "", Some("https://evil.example"))
        .await;
    assert_eq!(refused.err().map(|e| e.0), Some(403));
    let refused = server.try_connect(&cookie, "", Some("null")).await;
    assert_eq!(refused.err().map(|e| e.0), Some(403));
    for origin in [own.as_str(), "https://term.example.org"] {
        let mut c = server.try_connect(&cookie, "", Some(origin)).await.unwrap();
        c.ready().await;
    }
}

#[tokio::test]
async fn identity_cookie_is_required_and_must_be_genuine() {
    let server = Server::local(&[]);
    let cookie = server.new_identity().await;
    assert!(cookie.starts_with("termpool_id="));
    let (status, headers, _) = common::http_get(&server.addr, "/", &[]).await;
    assert_eq!(status, 200);
    let set = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .unwrap();
    assert!(set.1.contains("HttpOnly") && set.1.contains("SameSite=Strict"));

    let no_cookie = server.refusal("", "", None).await;
    assert_eq!(no_cookie.0, 401);
    let value = cookie.split_once('=').unwrap().1;
    let forged = format!(
        "termpool_id={}",
        value.replacen(|c: char| c.is_ascii_digit(), "f", 1)
    );
    assert_ne!(forged, cookie);
    assert_eq!(server.refusal(&forged, "", None).await.0, 401);
    let other_server = Server::local(&[]);
    let foreign = other_server.new_identity().await;
    assert_eq!(server.refusal(&foreign, "", None).await.0, 401);
}

#[tokio::test]
async fn sessions_per_user_are_limited() {
    let server = Server::local(&["--max-sessions-per-user", "2", "--reattach-grace-secs", "0"]);
    let cookie = server.new_identity().await;
    let mut a = server.connect_as(&cookie, "").await;
    let mut b = server.connect_as(&cookie, "").await;
    a.ready().await;
    b.ready().await;
    let refused = server.refusal(&cookie, "", None).await;
    assert_eq!(refused.0, 429);
    assert!(refused.1.contains("at most 2"), "{}", refused.1);
    // Another user is not affected, and closing one frees a place.
    server.connect("").await.ready().await;
    a.close().await;
    let mut again = server.connect_within(&cookie, Duration::from_secs(5)).await;
    again.ready().await;
}

#[tokio::test]
async fn new_sessions_per_minute_are_limited() {
    let server = Server::local(&["--max-new-sessions-per-minute", "3"]);
    let cookie = server.new_identity().await;
    for _ in 0..3 {
        server.connect_as(&cookie, "").await.close().await;
    }
    let refused = server.refusal(&cookie, "", None).await;
    assert_eq!(refused.0, 429);
}

#[tokio::test]
async fn oversized_frames_close_with_1009() {
    let server = Server::local(&["--max-frame-bytes", "65536"]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.send_bytes(&vec![b'a'; 65537]).await;
    loop {
        match c.next_frame(WAIT).await {
            Some(Frame::Closed(code)) => {
                assert_eq!(code, Some(1009));
                break;
            }
            Some(Frame::Bytes(_)) | Some(Frame::Ping) => {}
            other => panic!("expected close 1009, got {other:?}"),
        }
    }
}

/// A paste as large as one frame may be arrives whole, byte for byte.
#[tokio::test]
async fn a_large_paste_arrives_intact() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    let paste: Vec<u8> = (0..900_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let digest = format!("{:x}", Md5::digest(&paste));
    c.run("stty raw -echo; printf 'GO''>'; head -c 900000 | md5sum; stty sane")
        .await;
    c.expect_output("GO>").await;
    c.send_bytes(&paste).await;
    c.expect_output(&digest).await;
}

#[tokio::test]
async fn all_256_byte_values_pass_through_untouched() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    // Quotes split the marker so that the typed line's echo cannot match it.
    c.run("stty raw -echo -iexten; printf 'RA''W>'; cat").await;
    c.expect_output("RAW>").await;
    let all: Vec<u8> = (0..=255u8).collect();
    c.send_bytes(&all).await;
    c.expect_bytes(&all).await;
    let got = std::mem::take(&mut c.pending);
    let start = got.windows(256).position(|w| w == all.as_slice()).unwrap();
    assert_eq!(
        &got[start..],
        all.as_slice(),
        "nothing added after the bytes"
    );
}

#[tokio::test]
async fn multibyte_utf8_split_across_reads_arrives_in_order() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.sync().await;
    // The euro sign's three bytes leave the program in two writes, 200 ms apart.
    c.run(r"printf '<\342\202'; sleep 0.2; printf '\254>\n'")
        .await;
    let mut frames_with_euro_bytes = 0;
    while !common::contains(&c.pending, "<€>".as_bytes()) {
        match c.next_frame(WAIT).await {
            Some(Frame::Bytes(b)) => {
                if b.contains(&0xe2) || b.contains(&0xac) {
                    frames_with_euro_bytes += 1;
                }
                c.pending.extend_from_slice(&b);
            }
            Some(Frame::Ping) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        frames_with_euro_bytes >= 2,
        "the character really was split across frames"
    );
}

/// Output held back by a pause is delivered whole after the resume.
#[tokio::test]
async fn pause_stops_output_and_resume_loses_nothing() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.sync().await;
    c.run("seq 1 3000000; echo DONE$((1+1))").await;
    // Let output start flowing, then pause in the middle of it.
    let mut received = Vec::new();
    while received.len() < 200_000 {
        if let Some(Frame::Bytes(b)) = c.next_frame(WAIT).await {
            received.extend_from_slice(&b);
        }
    }
    c.send_frame(&ClientFrame::Pause).await;
    // Frames already in flight drain; after that nothing may arrive while paused.
    let mut quiet = false;
    for _ in 0..40 {
        let mut got = 0;
        while let Some(frame) = c.next_frame(Duration::from_millis(300)).await {
            if let Frame::Bytes(b) = frame {
                got += b.len();
                received.extend_from_slice(&b);
            }
        }
        if got == 0 {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "output kept flowing while paused");
    assert!(
        !common::contains(&received, b"DONE2"),
        "paused before the end"
    );
    c.send_frame(&ClientFrame::Resume).await;
    c.pending = received;
    c.expect_bytes(b"DONE2").await;
    let all = String::from_utf8(std::mem::take(&mut c.pending)).unwrap();
    // A line's text is what follows its last carriage return (the prompt redraws with one).
    let numbers: Vec<u64> = all
        .split('\n')
        .filter_map(|l| l.trim_end_matches('\r').rsplit('\r').next()?.parse().ok())
        .collect();
    let first = numbers.iter().position(|&n| n == 1).expect("line 1");
    let seq = &numbers[first..first + 3_000_000];
    assert!(
        seq.iter().enumerate().all(|(i, &n)| n == i as u64 + 1),
        "every line, in order"
    );
}

#[tokio::test]
async fn fifty_sessions_at_once() {
    let server = Server::local(&MANY_SESSIONS);
    let cookie = server.new_identity().await;
    let sessions = (0..50).map(|i| {
        let server = &server;
        let cookie = cookie.clone();
        async move {
            let mut c = server.connect_as(&cookie, "").await;
            c.ready().await;
            c.run(&format!("echo N$(({i}*1000+7))N")).await;
            c.expect_output(&format!("N{}N", i * 1000 + 7)).await;
            c
        }
    });
    let clients = futures_util::future::join_all(sessions).await;
    assert_eq!(clients.len(), 50);
    for c in clients {
        c.close().await;
    }
    let server_pid = server.pid();
    assert!(
        eventually(WAIT, || children_of(server_pid).is_empty()).await,
        "shells left: {:?}",
        children_of(server_pid)
    );
}

/// Closing the socket hangs up the terminal: the shell, its foreground job and its background jobs
/// all get SIGHUP, and nothing is left after 100 sessions.
#[tokio::test]
async fn closing_hangs_up_every_process_of_the_session() {
    let server = Server::local(&MANY_SESSIONS);
    let cookie = server.new_identity().await;
    let marker = format!("{}", 40000 + std::process::id() % 20000);
    let mut shells = Vec::new();
    for round in 0..10 {
        let batch = (0..10).map(|_| {
            let (server, cookie, marker) = (&server, cookie.clone(), marker.clone());
            async move {
                let mut c = server.connect_as(&cookie, "").await;
                c.ready().await;
                let pid = c.shell_pid().await;
                c.run(&format!("sleep {marker}1 & sleep {marker}2")).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                c.close().await;
                pid
            }
        });
        shells.extend(futures_util::future::join_all(batch).await);
        assert_eq!(shells.len(), (round + 1) * 10);
    }
    assert!(
        eventually(WAIT, || alive(&shells).is_empty()).await,
        "shells alive: {:?}",
        alive(&shells)
    );
    let pattern = format!("sleep {marker}");
    assert!(
        eventually(WAIT, || pids_with_cmdline(&pattern).is_empty()).await,
        "jobs alive: {:?}",
        pids_with_cmdline(&pattern)
    );
    assert!(children_of(server.pid()).is_empty());
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let server = Server::local(&["--ping-interval-secs", "1", "--reattach-grace-secs", "0"]);
    let mut c = server.connect("").await;
    c.ready().await;
    let pid = c.shell_pid().await;
    // While the client reads, it sees the server's pings (and answers them automatically).
    let mut pinged = false;
    for _ in 0..30 {
        if let Some(Frame::Ping) = c.next_frame(Duration::from_millis(200)).await {
            pinged = true;
            break;
        }
    }
    assert!(pinged, "the server pings");
    // Now the client goes silent without closing: after 3 intervals the server gives up.
    let silent = c;
    assert!(
        eventually(Duration::from_secs(10), || alive(&[pid]).is_empty()).await,
        "the session of a dead peer is hung up"
    );
    drop(silent);
}

#[tokio::test]
async fn health_and_metrics() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.run("echo hello").await;
    c.expect_output("hello").await;
    let (status, _, body) = common::http_get(&server.addr, "/healthz", &[]).await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mode"], "local");
    assert_eq!(health["sessions_open"], 1);
    let (status, _, body) = common::http_get(&server.addr, "/metrics", &[]).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("termpool_sessions_open 1"), "{text}");
    assert!(text.contains("termpool_sessions_total 1"));
    let bytes_in: u64 = metric(&text, "termpool_bytes_in_total");
    let bytes_out: u64 = metric(&text, "termpool_bytes_out_total");
    assert!(bytes_in >= "echo hello\r".len() as u64 && bytes_out > 0);
}

#[tokio::test]
async fn the_page_is_served_on_both_paths() {
    let server = Server::local(&[]);
    for path in ["/", "/container-terminal"] {
        let (status, headers, body) = common::http_get(&server.addr, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(String::from_utf8_lossy(&body).contains("<"), "{path}");
        let csp = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-security-policy"));
        assert!(csp.is_some(), "{path} sends a CSP");
    }
    // Every asset the page references is served.
    let (_, _, index) = common::http_get(&server.addr, "/", &[]).await;
    let index = String::from_utf8(index).unwrap();
    let assets: Vec<&str> = index
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .collect();
    // Only a build that skipped the page (TERMPOOL_SKIP_FRONTEND, never in CI) has no assets.
    let skipped = std::env::var_os("TERMPOOL_SKIP_FRONTEND").is_some();
    assert!(
        skipped || !assets.is_empty(),
        "the page references its assets: {index}"
    );
    for asset in assets {
        let (status, _, body) = common::http_get(&server.addr, asset, &[]).await;
        assert_eq!(status, 200, "{asset}");
        assert!(!body.is_empty(), "{asset}");
    }
    let cookie = server.new_identity().await;
    let mut c = server
        .try_connect_path("/container-terminal/ws", &cookie, "", None)
        .await
        .unwrap();
    assert_eq!(c.ready().await.mode, "local");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|&c| c == '-').count() == 4
}

#[tokio::test]
async fn the_shell_leads_its_own_session_on_the_pty_with_default_signals() {
    let server = Server::local(&[]);
    let mut c = server.connect("").await;
    c.ready().await;
    // Session leader, with this PTY as its controlling terminal.
    c.run("echo LE''AD=$(ps -o sid= -p $$ | tr -d ' ')/$$/$(ps -o tty= -p $$ | cut -c1-4)=")
        .await;
    c.expect_output("LEAD=").await;
    let out = c.expect_output("=").await;
    let lead = out.trim_end_matches('=');
    let parts: Vec<&str> = lead.split('/').collect();
    assert_eq!(parts[0], parts[1], "sid = shell pid: {out:?}");
    assert_eq!(parts[2], "pts", "controlling terminal: {out:?}");
    // No standard signal (1 to 31) ignored or blocked is inherited from the server (which
    // ignores SIGPIPE). glibc's own signals 32 and 33 are its business.
    c.run("grep -E '^Sig(Blk|Ign)' /proc/self/status; echo E''ND")
        .await;
    let out = c.expect_output("END").await;
    let mask = |name: &str| {
        let hex = out.split(name).nth(1).unwrap().split_whitespace().next();
        u64::from_str_radix(hex.unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{out:?}");
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{out:?}");
    // Ctrl-C reaches the foreground job through the terminal.
    c.run("sleep 100").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send_bytes(b"\x03").await;
    c.run("echo R''C=$?").await;
    c.expect_output("RC=130").await;
}
