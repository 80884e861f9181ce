//! Container mode end to end: the real server, the real Docker engine and the user image, driven
//! over a real WebSocket. Each test has a pool of its own (network `none`), removed afterwards.

mod common;

use std::time::Duration;

use common::{container_of, eventually, Frame, TestPool, MANY_SESSIONS, WAIT};
use termpool::protocol::{ErrorCode, Exit, ServerFrame};

/// The container a session is in, as its `ready` frame names it.

#[tokio::test]
async fn a_session_is_a_login_shell_of_the_users_own_account_by_the_agent() {
    a_session_is_a_login_shell_of_the_users_own_account("acct", &[]).await;
}

#[tokio::test]
async fn a_session_is_a_login_shell_of_the_users_own_account_by_docker_exec() {
    a_session_is_a_login_shell_of_the_users_own_account("acctx", &["--session-agent", "false"])
        .await;
}

/// `transport`: the server arguments that choose how sessions start.
async fn a_session_is_a_login_shell_of_the_users_own_account(name: &str, transport: &[&str]) {
    let pool = TestPool::new(name);
    let server = pool.server(1, 4, transport);
    let mut c = server.connect("cols=90&rows=20").await;
    let ready = c.ready().await;
    assert_eq!(ready.mode, "container");
    let user = ready.user.to_string();
    let container = container_of(&ready);
    assert!(user.starts_with('u') && user.len() == 13, "{user}");
    assert_eq!(container, format!("{}-0", pool.prefix));
    c.run("echo W=$(whoami)=$(pwd)=$(stat -c %a $HOME)=$(id -u)=E$((1))")
        .await;
    let out = c.expect_output("=E1").await;
    let fields: Vec<&str> = out.rsplit("W=").next().unwrap().split('=').collect();
    assert_eq!(fields[0], user);
    assert_eq!(fields[1], format!("/workspace/{user}"));
    assert_eq!(fields[2], "700");
    assert!(
        fields[3].parse::<u32>().unwrap() >= 200_000,
        "{}",
        fields[3]
    );
    c.run("container-info").await;
    c.expect_output(&format!("container: {container}")).await;
    c.expect_output(&format!("user: {user}")).await;
    c.run("echo SIZE=$(stty size)=").await;
    c.expect_output("SIZE=20 90=").await;
    c.run("echo CAP=$(grep CapEff /proc/self/status)=").await;
    c.expect_output("CAP=CapEff: 0000000000000000=").await;
}

#[tokio::test]
async fn the_same_browser_finds_its_files_and_container_again() {
    let pool = TestPool::new("sticky");
    let server = pool.server(2, 4, &[]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let first = c.ready().await;
    c.run("echo kept-$((6*7)) > note.txt; echo W$((1))W").await;
    c.expect_output("W1W").await;
    c.close().await;
    let mut c = server.connect_as(&cookie, "").await;
    let second = c.ready().await;
    assert_eq!(first.user, second.user);
    assert_eq!(first.container, second.container);
    assert_ne!(first.session, second.session);
    c.run("cat note.txt").await;
    c.expect_output("kept-42").await;
}

#[tokio::test]
async fn users_cannot_see_each_others_files_or_processes() {
    let pool = TestPool::new("iso");
    let server = pool.server(1, 4, &[]);
    let mut a = server.connect("").await;
    let mut b = server.connect("").await;
    let ra = a.ready().await;
    let rb = b.ready().await;
    assert_eq!(ra.container, rb.container, "same container: the hard case");
    let user_b = rb.user.to_string();
    b.run("echo secret > mine.txt; sleep 7777 & echo B$((1))B")
        .await;
    b.expect_output("B1B").await;
    a.run(&format!(
        "cat /workspace/{user_b}/mine.txt; ls /workspace/{user_b}; ls /workspace; echo A$((1))A"
    ))
    .await;
    let out = a.expect_output("A1A").await;
    assert!(!out.contains("secret\r\n"), "{out}");
    assert_eq!(out.matches("Permission denied").count(), 3, "{out}");
    a.run("echo C=$(ps aux | grep -c 'sleep 777[7]')=$((1))")
        .await;
    a.expect_output("C=0=1").await;
    a.run(&format!("kill -9 $(pgrep -u {user_b}) ; echo K$((1))K"))
        .await;
    a.expect_output("K1K").await;
    b.run("jobs; echo J$((1))J").await;
    let out = b.expect_output("J1J").await;
    assert!(out.contains("Running"), "B's job survived A: {out}");
}

#[tokio::test]
async fn exit_codes_resize_and_binary_output_through_the_agent() {
    exit_codes_resize_and_binary_output_through_docker("tty", &[]).await;
}

#[tokio::test]
async fn exit_codes_resize_and_binary_output_through_docker_exec() {
    exit_codes_resize_and_binary_output_through_docker("ttyx", &["--session-agent", "false"]).await;
}

/// `transport`: the server arguments that choose how sessions start.
async fn exit_codes_resize_and_binary_output_through_docker(name: &str, transport: &[&str]) {
    let pool = TestPool::new(name);
    let server = pool.server(1, 4, transport);
    let mut c = server.connect("").await;
    c.ready().await;
    c.resize_expecting_winch(132, 43).await;
    c.run("echo SIZE=$(stty size)=$(tput cols)=").await;
    c.expect_output("SIZE=43 132=132=").await;

    // Bytes 0x00-0x02 at the very start of a read are what bollard's decoder would mangle.
    c.run("stty raw -echo -iexten; printf 'RA''W>'; cat").await;
    c.expect_output("RAW>").await;
    let all: Vec<u8> = (0..=255u8).collect();
    c.send_bytes(&all).await;
    c.expect_bytes(&all).await;
    c.send_bytes(b"\x03").await; // stty raw: no SIGINT; end cat by closing instead

    let mut d = server.connect("").await;
    d.ready().await;
    d.run("exit 3").await;
    assert_eq!(
        d.next_server_frame().await,
        ServerFrame::Exit(Exit { code: Some(3) })
    );
    match d.next_frame(WAIT).await {
        Some(Frame::Closed(code)) => assert_eq!(code, Some(1000)),
        other => panic!("expected close 1000, got {other:?}"),
    }
}

#[tokio::test]
async fn closed_sessions_leave_no_process_behind_with_the_agent() {
    closed_sessions_leave_no_process_behind("hup", &[]).await;
}

#[tokio::test]
async fn closed_sessions_leave_no_process_behind_with_docker_exec() {
    closed_sessions_leave_no_process_behind("hupx", &["--session-agent", "false"]).await;
}

/// A process forked while its session is being hung up, after the agent looked for the session's
/// processes, gets the hang-up all the same: here a program whose SIGHUP trap starts a `sleep`
/// once every other process of the session has had its signal.
#[tokio::test]
async fn a_process_forked_during_the_hang_up_gets_it_too_with_the_agent() {
    a_process_forked_during_the_hang_up_gets_it_too("hupfork", &[]).await;
}

#[tokio::test]
async fn a_process_forked_during_the_hang_up_gets_it_too_with_docker_exec() {
    a_process_forked_during_the_hang_up_gets_it_too("hupforkx", &["--session-agent", "false"])
        .await;
}

/// `transport`: the server arguments that choose how sessions start.
async fn a_process_forked_during_the_hang_up_gets_it_too(name: &str, transport: &[&str]) {
    let pool = TestPool::new(name);
    let server = pool.server(1, 4, &[&["--reattach-grace-secs", "0"], transport].concat());
    let mut c = server.connect("").await;
    let ready = c.ready().await;
    let container = container_of(&ready);
    let uid = c.uid().await;
    c.run(
        "bash -c 'trap \"sleep 0.5; sleep 6061 & exit\" HUP; echo TRAP\"\"SET; \
         while :; do sleep 0.1; done'",
    )
    .await;
    c.expect_output("TRAPSET").await;
    c.close().await;
    assert_all_ended(&container, uid, Duration::from_secs(20)).await;
}

/// `transport`: the server arguments that choose how sessions start.
async fn closed_sessions_leave_no_process_behind(name: &str, transport: &[&str]) {
    let pool = TestPool::new(name);
    let server = pool.server(1, 4, &[&MANY_SESSIONS[..], transport].concat());
    let cookie = server.new_identity().await;
    let mut first = server.connect_as(&cookie, "").await;
    let ready = first.ready().await;
    let container = container_of(&ready);
    let uid = first.uid().await;
    // Proves the check below can see this user's processes at all.
    assert!(
        !TestPool::processes_of(&container, uid).is_empty(),
        "the shell is visible"
    );
    first.close().await;
    for batch in 0..5 {
        let opened = (0..10).map(|i| {
            let (server, cookie) = (&server, cookie.clone());
            async move {
                let mut c = server.connect_as(&cookie, "").await;
                c.ready().await;
                c.run(&format!("sleep 5{batch}{i}1 & sleep 5{batch}{i}2"))
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                c.close().await;
            }
        });
        futures_util::future::join_all(opened).await;
    }
    assert_all_ended(&container, uid, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_full_pool_refuses_with_503_before_the_upgrade() {
    let pool = TestPool::new("full");
    let server = pool.server(1, 1, &["--reattach-grace-secs", "0"]);
    let mut a = server.connect("").await;
    a.ready().await;
    let other = server.new_identity().await;
    let refused = server.refusal(&other, "", None).await;
    assert_eq!(refused.0, 503);
    assert!(refused.1.contains("pool full"), "{}", refused.1);
    // Once A has no live session, its slot may go to the newcomer.
    a.close().await;
    let mut admitted = server.connect_within(&other, Duration::from_secs(10)).await;
    admitted.ready().await;
}

#[tokio::test]
async fn a_server_killed_with_sigkill_comes_back_with_everything() {
    let pool = TestPool::new("kill9");
    let mut server = pool.server(2, 4, &[]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let before = c.ready().await;
    c.run("echo still-here > kill9.txt").await;
    let uid = c.uid().await;
    let containers = |prefix: &str| -> Vec<String> {
        let names = TestPool::docker(&["ps", "-a", "--format", "{{.Names}}"]);
        let mut mine: Vec<String> = names
            .lines()
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .map(str::to_owned)
            .collect();
        mine.sort();
        mine
    };
    let before_containers = containers(&pool.prefix);
    assert_eq!(before_containers.len(), 2);

    server.child.kill().unwrap(); // SIGKILL: no shutdown code runs
    server.child.wait().unwrap();
    drop(c);
    let server = pool.server(2, 4, &[]);
    let mut c = server.connect_as(&cookie, "").await;
    let after = c.ready().await;
    assert_eq!(after.user, before.user, "same account");
    assert_eq!(after.container, before.container, "same container");
    c.run("echo F=$(cat kill9.txt)=$(id -u)=$((1))E").await;
    c.expect_output(&format!("F=still-here={uid}=1E")).await;
    assert_eq!(
        containers(&pool.prefix),
        before_containers,
        "adopted, not duplicated"
    );
}

#[tokio::test]
async fn a_container_removed_under_a_live_session_is_replaced_and_files_stay() {
    let pool = TestPool::new("rmf");
    let server = pool.server(1, 4, &["--reattach-grace-secs", "0"]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let before = c.ready().await;
    c.run("echo precious > rmf.txt").await;
    let uid = c.uid().await;
    let container = container_of(&before);
    TestPool::docker(&["rm", "-f", &container]);
    // The live session is told its backend went away, then closed.
    let mut told = false;
    loop {
        match c.next_frame(WAIT).await {
            Some(Frame::Text(ServerFrame::Error(e))) => {
                assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
                told = true;
            }
            Some(Frame::Closed(_)) | None => break,
            _ => {}
        }
    }
    assert!(told, "an error frame says why the session ended");
    // The next connect gets a fresh container in the same slot, the same account and UID, and the
    // files on the shared volume.
    let mut c = server
        .connect_within(&cookie, Duration::from_secs(20))
        .await;
    let after = c.ready().await;
    assert_eq!(after.user, before.user);
    assert_eq!(after.container, before.container, "same slot name");
    c.run("echo F=$(cat rmf.txt)=$(id -u)=$((1))E").await;
    c.expect_output(&format!("F=precious={uid}=1E")).await;
}

/// Idle reaping ends every process of the account, also one its user cannot see: a process that
/// made itself non-dumpable is hidden from its own user by hidepid (a `pkill` as the user misses
/// it), yet the UID may still signal it.
#[tokio::test]
async fn idle_reaping_ends_even_processes_hidden_from_their_user() {
    let pool = TestPool::new("reaphid");
    let server = pool.server(
        1,
        4,
        &["--reattach-grace-secs", "0", "--idle-reap-secs", "3"],
    );
    let mut c = server.connect("").await;
    let container = container_of(&c.ready().await);
    let uid = c.uid().await;
    c.run(
        "setsid python3 -c 'import ctypes, time; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); \
         time.sleep(4321)' </dev/null >/dev/null 2>&1 &",
    )
    .await;
    let job = || {
        TestPool::processes_of(&container, uid)
            .iter()
            .any(|p| p.contains("4321"))
    };
    assert!(eventually(WAIT, job).await, "the job started");
    // Once non-dumpable, the job is gone from its user's own view of /proc.
    c.run(
        "for i in $(seq 50); do pgrep -f 'sleep.4321' >/dev/null || break; sleep 0.1; done; \
         echo SEEN=$(pgrep -c -f 'sleep.4321')=E",
    )
    .await;
    c.expect_output("SEEN=0=E").await;
    assert!(job(), "the job still runs");
    c.close().await;
    assert_all_ended(&container, uid, Duration::from_secs(15)).await;
}

/// A user who holds the per-UID process limit full is still reaped. The kernel never refuses a
/// setuid to a UID over its RLIMIT_NPROC: it marks the process, whose next execve then fails
/// (EAGAIN). So a session started when the user is at the limit takes them over it, and while
/// they are (after the last tab closes, a shell that ignores SIGHUP lives 3 s), a reaper that
/// becomes the user and then executes anything (`setpriv ... sh -c`) fails; so does one at the
/// limit on kernels before 5.14. Idle reaping here comes 1 s after the tabs close.
#[tokio::test]
async fn idle_reaping_ends_a_user_who_holds_the_process_limit_full() {
    const NPROC: usize = 40;
    let pool = TestPool::new("reapfull");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let nproc = NPROC.to_string();
    let server = pool.server_logged(
        1,
        4,
        &[
            "--user-nproc",
            &nproc,
            "--reattach-grace-secs",
            "0",
            "--idle-reap-secs",
            "1",
        ],
        &log,
    );
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let container = container_of(&c.ready().await);
    let uid = c.uid().await;
    let count = || TestPool::processes_of(&container, uid).len();
    // Sleeps until fork fails, then the forking process becomes one more; the shell waits for it
    // and ignores SIGHUP, as they all do. The typed line shows `"FORK", "FAILED"`.
    c.run(
        r#"trap '' HUP; python3 -c $'import errno, os\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError as e:\n        print("FORK", "FAILED", errno.errorcode[e.errno], flush=True)\n        break\n    if pid == 0:\n        os.execvp("sleep", ["sleep", "4321"])\nos.execvp("sleep", ["sleep", "4321"])'"#,
    )
    .await;
    c.expect_output("FORK FAILED EAGAIN").await;
    assert!(
        eventually(WAIT, || count() == NPROC).await,
        "the user is at the limit: {} processes",
        count()
    );
    // A second tab is let in all the same, and takes the user over the limit. Its login shell
    // cannot fork (bash retries for 15 s), but builtins work.
    let mut c2 = server.connect_as(&cookie, "").await;
    assert_eq!(container_of(&c2.ready().await), container);
    assert!(
        eventually(WAIT, || count() == NPROC + 1).await,
        "over the limit: {} processes",
        count()
    );
    c2.run("trap '' HUP; echo T2=$((6*7)); exec sleep 4322")
        .await;
    c2.expect_output_within("T2=42", Duration::from_secs(90))
        .await;
    c.close().await;
    c2.close().await;
    let gone = eventually(Duration::from_secs(20), || count() == 0).await;
    assert!(
        gone,
        "left behind: {} processes, e.g. {:?}; the server said: {:?}",
        count(),
        TestPool::processes_of(&container, uid).first(),
        common::log_lines_with(&log, "processes of")
    );
    let failed = common::log_lines_with(&log, "could not reap");
    assert!(failed.is_empty(), "{failed:?}");
}

/// Waits up to `within` until `uid` has no process left in `container`; fails listing them.
async fn assert_all_ended(container: &str, uid: u32, within: Duration) {
    let gone = eventually(within, || TestPool::processes_of(container, uid).is_empty()).await;
    assert!(
        gone,
        "left behind: {:?}",
        TestPool::processes_of(container, uid)
    );
}
