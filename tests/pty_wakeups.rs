//! The server sleeps while the shell reads its input: a program that takes a paste one byte at a
//! time must not wake the server once per byte (as it would if the PTY master were watched for
//! writability while nothing waits to write). A test binary of its own: it counts the server's
//! context switches, which other tests' servers do not touch but their load could inflate.

mod common;

use std::time::Duration;

use common::Server;

/// Voluntary context switches of every thread of process `pid` so far: each is a sleep, so each
/// one after the first is a wake-up.
fn sleeps(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server runs");
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .map(|v| v.trim().parse::<u64>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .sum()
}

const PASTE: usize = 3000;

#[tokio::test]
async fn a_program_reading_a_paste_byte_by_byte_does_not_wake_the_server_per_byte() {
    // No busy polling and no re-attach screen: the server's threads then sleep unless woken.
    let server = Server::local(&["--busy-poll-us", "0", "--reattach-grace-secs", "0"]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.sync().await;
    // Raw, unechoed input read one byte per read(): every read frees room in the input queue.
    c.run(&format!(
        "stty -echo -icanon min 1; echo WAIT\"\"ING; dd bs=1 count={PASTE} of=/dev/null 2>/dev/null; \
         stty sane; echo READ\"\"-ALL"
    ))
    .await;
    c.expect_output("WAITING").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = sleeps(server.pid());
    c.send_bytes(&vec![b'x'; PASTE]).await;
    c.expect_output("READ-ALL").await;
    let woken = sleeps(server.pid()) - before;
    eprintln!("the server slept {woken} times while {PASTE} bytes were read one at a time");
    // What is left: the paste's frame, the output at the end, timers; not one per byte (watching
    // for writability too, it was 132 here: wake-ups coalesce while the thread is still awake).
    assert!(
        woken <= 30,
        "the server was woken {woken} times while the shell read {PASTE} bytes one at a time"
    );
}
