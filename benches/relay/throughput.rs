//! The output throughput figure: `head -c N /dev/zero` in a raw TTY, through the server and, for
//! the floor, on a bare PTY.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::common::Client;
use crate::opts::Opts;
use crate::procfs::{cpu_seconds, own_cpu_seconds};
use crate::session::{drain_quiet, end_session, Target, QUIET};
use crate::table::{verdict, Row};
use crate::terminal::PtyTerm;

/// One throughput run: its length, frames, and the CPU the server and this client used.
struct Measured {
    secs: f64,
    frames: u64,
    /// Server CPU in % of one core, or `?` when its pid is unknown.
    server: String,
    client: f64,
}

pub async fn bench_throughput(
    target: &Target,
    opts: &Opts,
    notes: &mut Vec<String>,
) -> Result<Row> {
    let bytes = opts.mib << 20;
    let (mut c, _) = target.open_synced().await?;
    // Raw mode: no output post-processing in the TTY, as a full-screen program would have.
    c.run("stty raw -echo").await;
    c.sync().await;
    drain_quiet(&mut c).await?;
    let mut rates = Vec::new();
    let mut cpu_notes = Vec::new();
    // One unmeasured small run first, to fault in buffers on both sides.
    for run in 0..=opts.runs {
        let want = if run == 0 { bytes.min(4 << 20) } else { bytes };
        let m = zeros_through(&mut c, target, want).await?;
        drain_quiet(&mut c).await?;
        if run == 0 {
            continue;
        }
        let rate = want as f64 / (1 << 20) as f64 / m.secs;
        eprintln!(
            "  throughput run {run}/{}: {rate:.1} MiB/s ({:.2} s, {} frames, avg {} B/frame, \
             server CPU {}, client CPU {:.0}% of one core)",
            opts.runs,
            m.secs,
            m.frames,
            want / m.frames.max(1),
            m.server,
            m.client
        );
        cpu_notes.push(format!("{}/{:.0}%", m.server, m.client));
        rates.push(rate);
    }
    end_session(c, b"exit\r").await;
    notes.push(format!(
        "throughput: server/client CPU per run (100% = one core): {}",
        cpu_notes.join(", ")
    ));
    Ok(throughput_row(opts, &rates))
}

/// Has the shell print `want` zeros and reads them all.
async fn zeros_through(c: &mut Client, target: &Target, want: u64) -> Result<Measured> {
    let command = Bytes::from(format!("head -c {want} /dev/zero\r"));
    let server_cpu = target.pid.and_then(cpu_seconds);
    let client_cpu = own_cpu_seconds();
    let start = Instant::now();
    c.ws.send(Message::Binary(command)).await?;
    let mut zeros: u64 = 0;
    let mut frames: u64 = 0;
    while zeros < want {
        match timeout(Duration::from_secs(120), c.ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                frames += 1;
                zeros += b.iter().filter(|&&x| x == 0).count() as u64;
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => bail!("socket ended after {zeros} bytes: {other:?}"),
            Err(_) => bail!("stalled after {zeros} of {want} bytes"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let client = (own_cpu_seconds() - client_cpu) / secs * 100.0;
    let server = server_cpu
        .zip(target.pid.and_then(cpu_seconds))
        .map(|(a, b)| format!("{:.0}%", (b - a) / secs * 100.0))
        .unwrap_or_else(|| "?".into());
    Ok(Measured {
        secs,
        frames,
        server,
        client,
    })
}

fn throughput_row(opts: &Opts, rates: &[f64]) -> Row {
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Row {
        figure: format!("throughput, {} MiB of zeros (raw TTY)", opts.mib),
        samples: format!("{} runs", rates.len()),
        p50: format!("{median:.1} MiB/s"),
        p99: "-".into(),
        spread: format!(
            "{:.1}..{:.1} MiB/s ({} runs)",
            sorted[0],
            sorted[sorted.len() - 1],
            sorted.len()
        ),
        target: "median ≥ 70 MiB/s".into(),
        verdict: verdict(median >= 70.0),
    }
}

/// The throughput a bare PTY gives, read with blocking 64 KiB reads by this thread.
pub fn floor_throughput(shell_argv: &[String], opts: &Opts) -> Result<Row> {
    let pty = PtyTerm::open(
        shell_argv,
        Some((b"stty raw -echo; echo RAW$((6*7))\r", "RAW42")),
    )?;
    let mut buf = pty.1;
    let pty = pty.0;
    let bytes = opts.mib << 20;
    let mut rates = Vec::new();
    for run in 0..=opts.runs {
        let want = if run == 0 { bytes.min(4 << 20) } else { bytes };
        let start = Instant::now();
        pty.write(format!("head -c {want} /dev/zero\r").as_bytes())?;
        pty.read_zeros(want, &mut buf)?;
        let secs = start.elapsed().as_secs_f64();
        pty.read_quiet(QUIET)?;
        if run > 0 {
            let rate = want as f64 / (1 << 20) as f64 / secs;
            eprintln!(
                "  floor throughput run {run}/{}: {rate:.1} MiB/s",
                opts.runs
            );
            rates.push(rate);
        }
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Row {
        figure: "  floor: bare PTY, same output".into(),
        samples: format!("{} runs", rates.len()),
        p50: format!("{:.1} MiB/s", sorted[sorted.len() / 2]),
        p99: "-".into(),
        spread: format!("{:.1}..{:.1} MiB/s", sorted[0], sorted[sorted.len() - 1]),
        target: "(floor)".into(),
        verdict: "",
    })
}
