//! Busy polling after a keystroke (`BUSY_POLL_US`) against the real server: the worker spins only
//! in the window after input and not on a contended core, and an idle session costs no CPU. A test
//! binary of its own whose tests take turns ([`one_at_a_time`]), so that no other test competes
//! for the cores while CPU time is measured.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::{server_cpu, Client, Server};
use tokio::sync::{Mutex, MutexGuard};

/// Held for the whole of each test: one test's spinning server, or the busy loops the contention
/// test pins to a core, would make another's core contended and turn its polling off.
async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::const_new(());
    TURN.lock().await
}

/// CPU the server uses in the `span` after `client` sends `keys` (none: just waits).
async fn cpu_after(
    server: &Server,
    client: &mut Client,
    keys: Option<&[u8]>,
    span: Duration,
) -> Duration {
    let before = server_cpu(server.pid());
    if let Some(keys) = keys {
        client.send_bytes(keys).await;
    }
    tokio::time::sleep(span).await;
    server_cpu(server.pid()) - before
}

const WINDOW: Duration = Duration::from_millis(400);
const SPAN: Duration = Duration::from_millis(300);
/// After a line (three windows), until its windows have passed and any back-off they caused (1 s
/// after a contended round, which can come at their end) is over.
const SETTLE: Duration = Duration::from_millis(3 * 400 + 1000 + 200);

#[tokio::test]
async fn the_worker_polls_for_the_window_after_a_keystroke_then_sleeps() {
    let _turn = one_at_a_time().await;
    let window = WINDOW.as_micros().to_string();
    let server = Server::local(&["--busy-poll-us", &window]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.sync().await;
    tokio::time::sleep(SETTLE).await;

    let idle = cpu_after(&server, &mut c, None, SPAN).await;
    // On a busy machine the worker may find its core contended and rightly not poll (that is
    // counted): then it tries again once polling is back on, and goes on if it never polls.
    let mut typing = Duration::ZERO;
    for attempt in 1..=5 {
        let contended = contended_windows(&server).await;
        typing = cpu_after(&server, &mut c, Some(b"x"), SPAN).await;
        c.send_bytes(b"\x7f").await;
        // Spinning yields its core to any other thread, so on a busy machine it gets less than
        // all of one: a tenth of the span is far above what an idle worker uses.
        if typing >= SPAN / 10 {
            break;
        }
        assert!(
            contended_windows(&server).await > contended,
            "a keystroke should make the worker poll for {WINDOW:?}: it used {typing:?} of CPU \
             in {SPAN:?}, and its core was not found contended"
        );
        eprintln!(
            "attempt {attempt}: the worker's core was contended; polling is off for a second"
        );
        tokio::time::sleep(SETTLE).await;
    }
    tokio::time::sleep(SETTLE).await;
    let after = cpu_after(&server, &mut c, None, SPAN).await;
    eprintln!("CPU after a keystroke: {typing:?} in {SPAN:?}");

    for (when, cpu) in [("before the keystroke", idle), ("after its window", after)] {
        assert!(
            cpu < Duration::from_millis(10),
            "an idle session should cost no CPU {when}: the server used {cpu:?} in {SPAN:?}"
        );
    }
    c.sync().await;
}

#[tokio::test]
async fn output_within_a_window_extends_it() {
    let _turn = one_at_a_time().await;
    // The output comes a second after the line, inside the three windows (1.2 s) it opened,
    // and extends them by one from then: polling goes on past the line's own windows.
    polls_after_line(b"sleep 1; echo do''ne\r", "done", 3 * WINDOW).await;
}

#[tokio::test]
async fn a_line_keeps_the_worker_polling_longer_than_a_keystroke() {
    let _turn = one_at_a_time().await;
    // The output comes at once; the line's three windows go on past the first.
    polls_after_line(b"echo o''k\r", "ok", WINDOW).await;
}

/// Sends `line` to a server polling for `WINDOW`, waits for `output`, and checks that the worker
/// still polls `at` after the line: 20 ms of CPU or more in the 200 ms from then. A contended
/// core turns polling off for a second, so that is tried again, five times at most.
async fn polls_after_line(line: &[u8], output: &str, at: Duration) {
    let window = WINDOW.as_micros().to_string();
    let server = Server::local(&["--busy-poll-us", &window]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.sync().await;
    for attempt in 1..=5 {
        tokio::time::sleep(SETTLE).await;
        let contended = contended_windows(&server).await;
        let typed = std::time::Instant::now();
        c.send_bytes(line).await;
        c.expect_output(output).await;
        if typed.elapsed() > at - Duration::from_millis(50) {
            eprintln!("attempt {attempt}: the output came too late to tell");
            continue;
        }
        tokio::time::sleep_until((typed + at + Duration::from_millis(20)).into()).await;
        let after = cpu_after(&server, &mut c, None, Duration::from_millis(200)).await;
        if after >= Duration::from_millis(20) {
            return;
        }
        assert!(
            contended_windows(&server).await > contended,
            "the worker should still poll {at:?} after {line:?}: it used {after:?} of CPU in \
             the 200 ms from then, and its core was not found contended"
        );
        eprintln!(
            "attempt {attempt}: the worker's core was contended; polling is off for a second"
        );
    }
    panic!("five attempts could not tell whether the worker polls {at:?} after {line:?}");
}

/// `termpool_busy_poll_contended_total` of the server's `/metrics`.
async fn contended_windows(server: &Server) -> u64 {
    let (_, _, body) = common::http_get(&server.addr, "/metrics", &[]).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    body.lines()
        .find_map(|l| l.strip_prefix("termpool_busy_poll_contended_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("termpool_busy_poll_contended_total in /metrics")
}

#[tokio::test]
async fn without_busy_polling_a_keystroke_costs_next_to_nothing() {
    let _turn = one_at_a_time().await;
    let server = Server::local(&["--busy-poll-us", "0"]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.sync().await;
    let typing = cpu_after(&server, &mut c, Some(b"x"), SPAN).await;
    assert!(
        typing < Duration::from_millis(10),
        "with BUSY_POLL_US=0 a keystroke should not make the server poll: it used {typing:?} in {SPAN:?}"
    );
}

/// Busy loops pinned to one CPU, killed when dropped.
struct Hogs(Vec<Child>);

impl Drop for Hogs {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// The first CPU this process may run on.
fn first_cpu() -> usize {
    // SAFETY: sched_getaffinity fills the zeroed set it is given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &set))
            .expect("no CPU allowed")
    }
}

/// Pins every thread of `pid` to `cpu`.
fn pin(pid: u32, cpu: usize) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    for task in tasks {
        let tid: i32 = task.unwrap().file_name().to_string_lossy().parse().unwrap();
        // SAFETY: sched_setaffinity reads the set it is given.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set)
        };
        assert_eq!(
            rc,
            0,
            "pinning thread {tid}: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[tokio::test]
async fn a_worker_whose_core_is_contended_does_not_poll() {
    let _turn = one_at_a_time().await;
    let window = WINDOW.as_micros().to_string();
    let server = Server::local(&["--busy-poll-us", &window]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.sync().await;
    tokio::time::sleep(SETTLE).await;

    // Two busy loops share the server's one core with it: a polling worker would get its share
    // of that core for the whole window, but it waits behind them, which is what polling is for
    // avoiding.
    let cpu = first_cpu();
    pin(server.pid(), cpu);
    let hogs = Hogs(
        (0..2)
            .map(|_| {
                let hog = Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("a busy loop");
                pin(hog.id(), cpu);
                hog
            })
            .collect(),
    );
    let contended = contended_windows(&server).await;
    let typing = cpu_after(&server, &mut c, Some(b"x"), SPAN).await;
    drop(hogs);
    assert!(
        contended_windows(&server).await > contended,
        "the contended window should be counted in /metrics"
    );
    assert!(
        typing < Duration::from_millis(10),
        "on a contended core a keystroke should not make the worker poll: it used {typing:?} in {SPAN:?}"
    );
    c.send_bytes(b"\x7f").await;
    c.sync().await;
}
