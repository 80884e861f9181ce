//! Opening figures: re-attaching to a dropped session, and a brand-new user's first session.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::StreamExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::common::Client;
use crate::opts::Opts;
use crate::session::{drain_quiet, end_session, fresh_identity, Target, SAMPLE_TIMEOUT};
use crate::table::{ms, verdict, Dist, Row};

/// Re-attach (`docs/protocol.md`, Reconnect): a session that has printed a screenful is dropped
/// without a close, and re-opened with `?session=<id>`; timed to the `ready` frame and to the
/// screen that follows it. Needs re-attach on (REATTACH_GRACE_SECS > 0).
pub async fn bench_reattach(target: &Target, opts: &Opts) -> Result<Vec<Row>> {
    let samples = if opts.quick { 10 } else { 100 };
    let mut c = target.open().await?;
    let session = c.ready().await.session.into_owned();
    c.sync().await;
    c.send_bytes(b"seq 1 200\r").await;
    c.expect_output("200\r\n").await;
    drain_quiet(&mut c).await?;
    let reopen = Target {
        query: format!("{}&session={session}", target.query),
        addr: target.addr.clone(),
        path: target.path.clone(),
        cookie: target.cookie.clone(),
        pid: target.pid,
        local: target.local,
    };
    let mut to_ready = Vec::with_capacity(samples);
    let mut to_screen = Vec::with_capacity(samples);
    for i in 0..samples + 1 {
        drop(c); // no close frame: a network blink
        let (again, t_ready, t_screen) = reattach_once(&reopen).await?;
        c = again;
        if i > 0 {
            to_ready.push(t_ready);
            to_screen.push(t_screen);
        }
    }
    end_session(c, b"\x15exit\r").await;
    let screen = Dist::new(to_screen);
    let ok = screen.pct(50.0) <= 50_000_000;
    Ok(vec![
        Row::in_ms(
            "re-attach: `ready`".into(),
            &Dist::new(to_ready),
            "-".into(),
            "",
            "",
        ),
        Row::in_ms(
            "re-attach: `ready` + screen".into(),
            &screen,
            "-".into(),
            "p50 ≤ 50.0 ms",
            verdict(ok),
        ),
    ])
}

/// Re-opens the session of `reopen`: the client, ns to `ready` and ns to the screen.
async fn reattach_once(reopen: &Target) -> Result<(Client, u64, u64)> {
    let start = Instant::now();
    let mut c = reopen.open().await?;
    let ready = c.ready().await;
    let t_ready = start.elapsed().as_nanos() as u64;
    if !ready.resumed {
        bail!("not resumed: {ready:?}");
    }
    match timeout(Duration::from_secs(5), c.ws.next()).await {
        Ok(Some(Ok(Message::Binary(_)))) => {}
        other => bail!("no screen after ready: {other:?}"),
    }
    let t_screen = start.elapsed().as_nanos() as u64;
    Ok((c, t_ready, t_screen))
}

/// A brand-new user's first session, first output byte: a fresh identity each time, so the
/// server places the user and, in container mode, creates their Linux account before the shell
/// starts.
pub async fn bench_new_users(target: &Target, opts: &Opts) -> Result<Row> {
    let samples = if opts.quick { 3 } else { 20 };
    let mut firsts = Vec::with_capacity(samples);
    let mut mode = String::new();
    for _ in 0..samples {
        let newcomer = Target {
            addr: target.addr.clone(),
            path: target.path.clone(),
            cookie: fresh_identity(&target.addr).await?,
            query: target.query.clone(),
            pid: target.pid,
            local: target.local,
        };
        let start = Instant::now();
        let mut c = newcomer.open().await?;
        mode = c.ready().await.mode.into_owned();
        while c.pending.is_empty() {
            match timeout(SAMPLE_TIMEOUT, c.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => c.pending.extend_from_slice(&b),
                Ok(Some(Ok(_))) => {}
                Ok(other) => bail!("socket ended before any output: {other:?}"),
                Err(_) => bail!("no output within {SAMPLE_TIMEOUT:?}"),
            }
        }
        firsts.push(start.elapsed().as_nanos() as u64);
        end_session(c, b"\x15exit\r").await;
    }
    let d = Dist::new(firsts);
    // The issue's target is for container mode, where a new user needs a new account.
    let (target, verdict_text) = match mode.as_str() {
        "container" => ("p50 ≤ 500.0 ms", verdict(d.pct(50.0) <= 500_000_000)),
        _ => ("", ""),
    };
    Ok(Row::in_ms(
        "a new user's first session: first output byte".into(),
        &d,
        format!("max {}", ms(d.pct(100.0))),
        target,
        verdict_text,
    ))
}
