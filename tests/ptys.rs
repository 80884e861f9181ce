//! PTYs as users share them (issue #15), through the real server, the real Docker engine and the
//! user image (the default one, or `CONTAINER_IMAGE`, which the servers inherit): the users' capped
//! `/dev/pts`, the sessions' own devpts instance that users cannot reach, the host's budget.

mod common;

use std::process::{Command, Stdio};

use common::{container_of, Client, TestPool};

/// Where the sessions' PTYs live in a user container (the agent's own devpts instance).
const AGENT_PTS: &str = "/dev/termpool-pts";

/// A new session of `cookie`'s user: its container, after a command typed there answered.
async fn open_and_type(server: &common::Server, cookie: &str) -> (Client, String) {
    let mut c = server.connect_as(cookie, "").await;
    let ready = c.ready().await;
    c.sync().await;
    let tty = c.output_of("tty").await;
    assert!(
        tty.starts_with(&format!("{AGENT_PTS}/")),
        "the session's terminal is {tty:?}"
    );
    (c, container_of(&ready))
}

/// User A of container 0 calls openpty() in a loop and holds every PTY it gets (the loop stops at
/// 200 so that, should the cap be gone, the host keeps its PTYs): A gets exactly the container's
/// cap, since no session's PTY is in that instance; then A itself, another user of the same
/// container and users of container 1 all open sessions and type a command.
#[tokio::test]
async fn a_user_holding_every_pty_it_can_get_blocks_no_session() {
    const CAP: usize = 16;
    let pool = TestPool::new("ptyhold");
    let cap = CAP.to_string();
    let server = pool.server(2, 2, &["--ptys-per-container", &cap]);
    let a_cookie = server.new_identity().await;
    let (mut a, container_a) = open_and_type(&server, &a_cookie).await;
    a.run(
        "python3 -c 'exec(\"import os, time\\nfds = []\\ntry:\\n    while len(fds) < 200: \
         fds.append(os.openpty())\\nexcept OSError as e: print(\\\"HO\\\" + \\\"ARD\\\", \
         len(fds), \\\"ST\\\" + \\\"OP\\\", e.strerror, flush=True)\\ntime.sleep(300)\")' &",
    )
    .await;
    let out = a.expect_output("STOP").await;
    let got: usize = out
        .rsplit("HOARD ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"));
    assert_eq!(
        got, CAP,
        "A should get the whole cap of its container's /dev/pts, and no more"
    );
    // A's own new session, while A holds every PTY of /dev/pts.
    let (a2, _) = open_and_type(&server, &a_cookie).await;
    // The pool has 2 x 2 places: of three more users, one joins A's container, two the other.
    let mut containers = Vec::new();
    let mut clients = vec![a2];
    for _ in 0..3 {
        let cookie = server.new_identity().await;
        let (c, at) = open_and_type(&server, &cookie).await;
        containers.push(at);
        clients.push(c);
    }
    assert_eq!(
        containers.iter().filter(|c| **c == container_a).count(),
        1,
        "one user shares A's container: {containers:?}"
    );
    assert_eq!(
        a.output_of("ls /dev/pts | grep -c '^[0-9]'").await,
        CAP.to_string(),
        "A's hoard was still held while the others opened their sessions"
    );
}

/// A and B share a container. A cannot open the sessions' instance's `ptmx`, list the instance,
/// or open B's terminal; B's terminal is B's, with the usual owner, group and mode.
#[tokio::test]
async fn users_cannot_reach_the_sessions_ptys_of_others() {
    let pool = TestPool::new("ptypriv");
    let server = pool.server(1, 2, &[]);
    let (mut b, _) = open_and_type(&server, &server.new_identity().await).await;
    let b_tty = b.output_of("tty").await;
    let b_id = b.output_of("id -un").await;
    assert_eq!(
        b.output_of("stat -c '%U %G %a' \"$(tty)\"").await,
        format!("{b_id} tty 620")
    );
    let (mut a, _) = open_and_type(&server, &server.new_identity().await).await;
    let ptmx = a
        .output_of(&format!(
            "python3 -c 'open(\"{AGENT_PTS}/ptmx\", \"r+b\")' 2>&1 | tail -1"
        ))
        .await;
    assert!(ptmx.contains("PermissionError"), "A opened ptmx: {ptmx}");
    let list = a.output_of(&format!("ls {AGENT_PTS} 2>&1")).await;
    assert!(list.contains("Permission denied"), "A listed: {list}");
    for attempt in [format!("echo hi > {b_tty}"), format!("cat < {b_tty}")] {
        let out = a.output_of(&format!("{attempt} 2>&1; echo rc=$?")).await;
        assert!(
            out.contains("Permission denied") && out.ends_with("rc=1"),
            "{attempt}: {out}"
        );
    }
    assert_eq!(
        a.output_of(&format!("stat -c '%U %a' {AGENT_PTS}")).await,
        "root 711"
    );
}

/// Programs that look at their terminal's name work on the sessions' instance: `tty`,
/// `ttyname()`, `mesg`, `script`, vim, and tmux (new-session, send-keys, capture-pane, attach,
/// detach).
#[tokio::test]
async fn terminal_programs_work_on_the_sessions_instance() {
    let pool = TestPool::new("ptyprog");
    let server = pool.server(1, 1, &[]);
    let (mut c, _) = open_and_type(&server, &server.new_identity().await).await;
    let tty = c.output_of("tty").await;
    let ttyname = c
        .output_of("python3 -c 'import os; print(os.ttyname(0))'")
        .await;
    assert_eq!(ttyname, tty);
    assert_eq!(
        c.output_of("mesg n; mesg; mesg y; mesg").await,
        "is n\nis y"
    );
    let inner = c.output_of("script -qc tty /dev/null").await;
    assert!(inner.starts_with("/dev/pts/"), "script's own PTY: {inner}");
    c.run("vim -u NONE -N ~/v.txt").await;
    c.send_bytes(b"iwritten in vim\x1b:wq\r").await;
    // vim would take what is typed before it exits as its own input: its leaving the alternate
    // screen, then the shell's prompt.
    c.expect_output("15B written").await;
    c.expect_output("\x1b[?1049l").await;
    c.expect_output("$ ").await;
    assert_eq!(c.output_of("cat ~/v.txt").await, "written in vim");
    let captured = c
        .output_of(
            "tmux new-session -d -s t && tmux send-keys -t t 'echo TM\"\"UX-$((6*7))' Enter && \
         sleep 1 && tmux capture-pane -p -t t | grep -c TMUX-42",
        )
        .await;
    assert_eq!(captured, "1", "tmux ran the command in its pane");
    c.run("tmux attach -t t").await;
    // Typed only once the client is attached (it enters the alternate screen): keys that come
    // sooner may reach the outer shell, which then reads tmux's prefix as its own.
    c.expect_output("\x1b[?1049h").await;
    c.run("echo INSIDE-$((6*7))").await;
    c.expect_output("INSIDE-42").await;
    // tmux asks the terminal what it is (`ESC [>c`, `ESC [>q`); this client never answers, as
    // xterm.js would, and keys that come before tmux stops waiting pass to the pane unbound. It
    // is done when it sets its key mode.
    c.expect_output("\x1b[?7727h").await;
    c.send_bytes(b"\x02d").await;
    c.expect_output("[detached").await;
    c.sync().await;
    assert_eq!(c.output_of("tmux ls | grep -c '^t:'").await, "1");
    c.output_of("tmux kill-server").await;
}

/// L leaves a `setsid -f` process on each of its closed sessions' terminals until the sessions'
/// instance is full (the kernel frees a PTY only when the last fd of its slave closes); V, in
/// the same container, still opens a session: the agent ends the processes of the account
/// holding the most terminals of ended sessions and asks for the PTY again.
#[tokio::test]
async fn terminals_left_held_by_ended_sessions_are_taken_back() {
    let pool = TestPool::new("ptyheld");
    // The instance holds USERS_PER_CONTAINER x (MAX_SESSIONS_PER_USER + 1) = 6 PTYs; a closed
    // session ends at once (no re-attach grace).
    let server = pool.server(
        1,
        2,
        &["--max-sessions-per-user", "2", "--reattach-grace-secs", "0"],
    );
    let l_cookie = server.new_identity().await;
    for _ in 0..6 {
        let (mut l, _) = open_and_type(&server, &l_cookie).await;
        l.output_of("setsid -f sleep 600").await;
        l.close().await;
    }
    let (mut v, _) = open_and_type(&server, &server.new_identity().await).await;
    assert_eq!(v.output_of("echo V-$((6*7))").await, "V-42");
    let (mut l, _) = open_and_type(&server, &l_cookie).await;
    assert_eq!(
        l.output_of("pgrep -c -u \"$(id -u)\" sleep").await,
        "0",
        "L's processes holding the old terminals were ended"
    );
}

/// A pool whose PTY caps cannot fit the host's `kernel.pty.max` is refused at start.
#[test]
fn a_pool_whose_pty_caps_exceed_the_hosts_budget_is_refused() {
    let stderr = refused_at_start(&["--max-containers", "1000", "--ptys-per-container", "4096"]);
    assert!(
        stderr.contains("PTYS_PER_CONTAINER") && stderr.contains("kernel.pty.max"),
        "{stderr}"
    );
}

/// The sessions' instance counts in the budget: a pool whose users' PTYs fit the host alone but
/// not with the sessions' own instances is refused, naming the settings that size those.
#[test]
fn the_sessions_own_ptys_count_in_the_hosts_budget() {
    let stderr = refused_at_start(&[
        "--max-containers",
        "10",
        "--ptys-per-container",
        "250",
        "--users-per-container",
        "50",
        "--max-sessions-per-user",
        "10",
        "--max-sessions",
        "0",
    ]);
    assert!(
        stderr.contains("MAX_SESSIONS_PER_USER") && stderr.contains("kernel.pty.max"),
        "{stderr}"
    );
}

/// Runs a container-mode server with `args` (its data directory removed after), expects it to
/// refuse to start, and returns what it printed.
fn refused_at_start(args: &[&str]) -> String {
    common::require_docker();
    let data = std::env::temp_dir().join(format!("tpt-ptybudget-{}", uuid::Uuid::new_v4()));
    let out = Command::new(env!("CARGO_BIN_EXE_termpool"))
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--use-containers",
            "true",
        ])
        .args(["--container-prefix", "tpt-ptybudget", "--data-dir"])
        .arg(&data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the server");
    let _ = std::fs::remove_dir_all(&data);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the server started: {stderr}");
    stderr
}
