//! The agent's network mode (Swarm) driven through `RemoteAgent`, against the real static agent
//! in a real container of the user image (no Swarm needed): sessions, accounts, ending
//! processes, the lockdown as users meet it, attacks on the wire, and the node relay the agent
//! hands sessions to.

#[path = "remote_agent/fixture.rs"]
mod fixture;
#[path = "remote_agent/node_relay.rs"]
mod node_relay;
#[path = "remote_agent/wire.rs"]
mod wire;

use std::io::{Read, Write};
use std::time::Duration;

use fixture::{ended, open, resize, sh, AgentContainer, SLOT};
use termpool::tty::remote::{AgentError, RemoteAgent, WriteRequest};
use termpool_agent_proto::{AccountRequest, Cipher, FailureKind, FrameType};

/// Capability bits the agent needs only to start: SETPCAP, NET_ADMIN, SYS_ADMIN.
const START_CAPS: u64 = (1 << 8) | (1 << 12) | (1 << 21);

#[tokio::test]
async fn sessions_accounts_and_ending_processes_over_the_network() {
    let c = AgentContainer::start("sess", &[]);
    let status = c.ready().await;
    let lock = &status.lockdown;
    assert_eq!(lock.error, None, "{}", c.logs());
    assert!(lock.proc_hidepid, "{status:?}");
    assert!(lock.no_new_privs, "{status:?}");
    assert!(lock.seccomp_filters >= 1, "{status:?}");
    let cap_eff = u64::from_str_radix(&lock.cap_eff, 16).unwrap();
    assert_eq!(cap_eff & START_CAPS, 0, "{status:?}");

    let (alice, alice_uid) = c.account(1).await;
    // Idempotent, as the account script is.
    c.account(1).await;
    let status = c.agent().status().await.unwrap();
    assert!(
        status
            .homes
            .iter()
            .any(|h| h.name == alice && h.uid == alice_uid),
        "{status:?}"
    );

    let agent = c.agent();
    let mut s = open(&agent, &alice).await.expect("a session");
    assert_eq!(sh(&mut s, "id -u").await, alice_uid.to_string());
    assert_eq!(sh(&mut s, "echo $((6 * 7))").await, "42");
    resize(&s, 123, 45).await;
    assert_eq!(sh(&mut s, "stty size").await, "45 123");
    // Output larger than a frame arrives whole.
    assert_eq!(
        sh(&mut s, "head -c 300000 /dev/zero | tr '\\0' x | wc -c").await,
        "300000"
    );
    let big = sh(&mut s, "head -c 200000 /dev/zero | tr '\\0' y").await;
    assert_eq!(big.matches('y').count(), 200000);
    // exit: EXIT with the code.
    s.tty.write(b"exit 7\r").await.unwrap();
    assert!(ended(&mut s).await);
    assert_eq!(s.output.exit_code().await.unwrap(), Some(7));

    // A hang-up ends the shell and what it started.
    let mut s = open(&agent, &alice).await.unwrap();
    sh(&mut s, "sleep 4242 & echo started").await;
    assert!(c
        .processes_of(alice_uid)
        .iter()
        .any(|p| p.contains("sleep 4242")));
    s.tty.hangup().await;
    assert!(ended(&mut s).await);
    assert_eq!(s.output.exit_code().await.unwrap(), None);
    assert!(
        wait_until(|| c.processes_of(alice_uid).is_empty()).await,
        "{:?}",
        c.processes_of(alice_uid)
    );

    // END ends every process of the account, its live shell included.
    let mut s = open(&agent, &alice).await.unwrap();
    sh(&mut s, "(trap '' HUP; sleep 4343) & echo started").await;
    agent.end_processes(alice_uid).await.expect("END");
    assert!(ended(&mut s).await, "the shell survived END");
    assert!(
        c.processes_of(alice_uid).is_empty(),
        "{:?}",
        c.processes_of(alice_uid)
    );

    // The account script's refusals keep their kinds: alice's UID for another name.
    let other = AccountRequest {
        name: format!("{alice}b"),
        uid: alice_uid,
        home: format!("/workspace/{alice}b"),
    };
    match agent.account(&other).await {
        Err(AgentError::Refused { kind, .. }) => assert_eq!(kind, FailureKind::UidOwnsOtherHome),
        other => panic!("{other:?}"),
    }
    // Root and system accounts are refused before any script runs.
    let root = AccountRequest {
        name: "root".into(),
        uid: 0,
        home: "/workspace/root".into(),
    };
    assert!(matches!(
        agent.account(&root).await,
        Err(AgentError::Refused {
            kind: FailureKind::BadRequest,
            ..
        })
    ));
    assert!(agent.end_processes(0).await.is_err());
}

/// A volume gathers a home for every account it ever had (evicted users keep theirs). STATUS,
/// which admits users to the slot, still answers with thousands of them: the list is cut to fit
/// one frame and says how many it left out.
#[tokio::test]
async fn a_volume_of_thousands_of_homes_still_answers_status() {
    let c = AgentContainer::start("homes", &[]);
    c.ready().await;
    let make = "cd /workspace && seq -f 'u_%012g' 1 4000 | xargs mkdir";
    let (ok, out) = fixture::docker(&["exec", &c.name, "sh", "-c", make]);
    assert!(ok, "making 4000 homes: {out}");
    let status = c.agent().status().await;
    let status = status.unwrap_or_else(|e| panic!("STATUS of 4000 homes: {e}\n{}", c.logs()));
    assert_eq!(status.lockdown.error, None, "{}", c.logs());
    let kept = status.homes.len() as u64;
    assert!(kept > 1000, "only {kept} homes reported");
    assert_eq!(
        kept + status.homes_left_out,
        4000,
        "every home reported or counted"
    );
    assert_eq!(status.homes[0].name, "u_000000000001", "the first by name");
    // The slot still takes users.
    let (alice, uid) = c.account(1).await;
    let mut s = open(&c.agent(), &alice).await.expect("a session");
    assert_eq!(sh(&mut s, "id -u").await, uid.to_string());
}

#[tokio::test]
async fn users_meet_the_lockdown() {
    let (subnet, gateway) = docker_bridge();
    // A listener of this test on the Docker bridge's gateway: the fence must keep users off it.
    let listener = std::net::TcpListener::bind((gateway.as_str(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    // On a Swarm the overlay is found from the routes; here the bridge is named.
    let fence = format!("TERMPOOL_AGENT_FENCE={subnet}");
    let c = AgentContainer::start("lock", &[&fence]);
    assert_eq!(c.ready().await.lockdown.error, None, "{}", c.logs());
    let (bob, _) = c.account(2).await;
    let mut s = open(&c.agent(), &bob).await.unwrap();
    let out = sh(&mut s, "unshare -Ur true 2>&1; echo rc=$?").await;
    assert!(!out.ends_with("rc=0"), "user namespaces are open: {out}");
    let out = sh(&mut s, "unshare -m true 2>&1; echo rc=$?").await;
    assert!(!out.ends_with("rc=0"), "{out}");
    let out = sh(
        &mut s,
        "cat /proc/1/status 2>&1 | head -n 1; ls /proc | grep -cx 1",
    )
    .await;
    assert!(
        out.contains("No such file") && out.ends_with('0'),
        "pid 1 is visible: {out}"
    );
    assert_eq!(
        sh(&mut s, "grep CapEff /proc/self/status").await,
        "CapEff:\t0000000000000000"
    );
    let out = sh(
        &mut s,
        "test -s /run/secrets/agent-key && echo KEY; grep -c agent-key /proc/self/mountinfo",
    )
    .await;
    assert_eq!(out, "0", "the key file is still there: {out}");
    let out = sh(&mut s, "mount -o remount,hidepid=0 /proc 2>&1; echo rc=$?").await;
    assert!(!out.ends_with("rc=0"), "{out}");
    let reach = format!("timeout 5 bash -c 'echo > /dev/tcp/{gateway}/{port}' 2>&1; echo rc=$?");
    let out = sh(&mut s, &reach).await;
    assert!(
        !out.ends_with("rc=0"),
        "a user reached the gateway through the fence: {out}"
    );
    assert_eq!(sh(&mut s, "ulimit -u").await, "256");
}

#[tokio::test]
async fn wire_attacks_get_no_shell_and_the_agent_keeps_serving() {
    let c = AgentContainer::start("wire", &[]);
    c.ready().await;
    let (carol, carol_uid) = c.account(3).await;

    // The wrong key: the handshake fails, nothing runs.
    let wrong = RemoteAgent::new(c.addr.clone(), SLOT, [9; 32]);
    match open(&wrong, &carol).await {
        Err(AgentError::Handshake { .. }) => {}
        other => panic!("a wrong key got {:?}", other.map(|_| "a session")),
    }
    // The right key for another slot (the prologue differs).
    let other_slot = RemoteAgent::new(c.addr.clone(), "termpool-slot-other", c.psk);
    assert!(matches!(
        other_slot.status().await,
        Err(AgentError::Handshake { .. })
    ));
    assert!(c.processes_of(carol_uid).is_empty());

    // Garbage, an oversized first message, and garbage after a good handshake: closed.
    let mut garbage = vec![0, 48];
    garbage.extend_from_slice(&[0x41; 48]);
    assert!(closed_after(&c.addr, &garbage));
    let mut oversized = vec![0xff, 0xff];
    oversized.extend(std::iter::repeat_n(0u8, 65535));
    assert!(closed_after(&c.addr, &oversized));
    // Announces 18245 bytes and sends fewer: closed at the agent's first-frame timeout.
    assert!(closed_after(&c.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    let (mut stream, mut tx, _rx) = wire::connect(&c.addr, &c.psk, Cipher::fast_here());
    let mut frame = Vec::new();
    tx.seal(FrameType::Input, b"ls\r", &mut frame).unwrap();
    // INPUT before OPEN, then tampered bytes.
    stream.write_all(&frame).unwrap();
    assert!(read_to_close(&mut stream));

    // The agent still serves everyone else.
    let mut s = open(&c.agent(), &carol)
        .await
        .expect("a session after the attacks");
    assert_eq!(sh(&mut s, "echo still-here").await, "still-here");
    let logs = c.logs();
    assert!(logs.contains("handshake refused"), "{logs}");
}

/// Output nobody reads stops the program, not the agent's memory, and input still passes: TCP's
/// window is the flow control, per session.
#[tokio::test]
async fn unread_output_blocks_the_program_and_input_still_passes() {
    let c = AgentContainer::start("flow", &[]);
    c.ready().await;
    let (erin, erin_uid) = c.account(6).await;
    let mut s = open(&c.agent(), &erin).await.unwrap();
    sh(&mut s, "true").await;
    s.tty.write(b"yes flowing\r").await.unwrap();
    // Nothing is read for a while: `yes` must end up asleep on its full terminal.
    let asleep = wait_until(|| {
        c.processes_of(erin_uid)
            .iter()
            .any(|p| p.contains("yes flowing"))
            && process_states(&c, "yes").iter().all(|s| s.starts_with('S'))
    })
    .await;
    assert!(asleep, "{:?}", process_states(&c, "yes"));
    let rss = fixture::docker(&["top", &c.name, "-eo", "rss,args"]).1;
    let agent_kb: Vec<u64> = rss
        .lines()
        .filter(|l| l.contains("termpool-agent"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        agent_kb.iter().all(|&kb| kb < 32 * 1024),
        "agent RSS (KiB): {agent_kb:?}"
    );
    // Ctrl-C goes through while the output is backed up; the shell comes back.
    fixture::interrupt(&mut s).await;
    assert_eq!(sh(&mut s, "echo back-again").await, "back-again");
}

fn process_states(c: &AgentContainer, name: &str) -> Vec<String> {
    let out = fixture::docker(&["top", &c.name, "-eo", "stat,comm"]).1;
    out.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(name))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

/// A container that cannot lock down (no SYS_ADMIN: /proc cannot be remounted) gets an agent
/// that says so and serves no one, rather than serving unlocked.
#[tokio::test]
async fn an_agent_that_cannot_lock_down_serves_no_session() {
    let caps: Vec<&str> = fixture::TASK_CAPS
        .into_iter()
        .filter(|&c| c != "SYS_ADMIN")
        .collect();
    let c = AgentContainer::start_with_caps("nolock", &[], &caps);
    let status = c.ready().await;
    let error = status.lockdown.error.clone().unwrap_or_default();
    assert!(error.contains("hidepid"), "{status:?}\n{}", c.logs());
    assert!(!status.lockdown.proc_hidepid, "{status:?}");
    let req = AccountRequest {
        name: "unlocked".into(),
        uid: c.uid_base + 5,
        home: "/workspace/unlocked".into(),
    };
    match c.agent().account(&req).await {
        Err(AgentError::Refused { kind, .. }) => assert_eq!(kind, FailureKind::NotLockedDown),
        other => panic!("an unlocked agent created an account: {other:?}"),
    }
    // Not even root's shell: OPEN is refused before any account lookup.
    let err = open(&c.agent(), "root").await.err().expect("no session");
    assert!(err.to_string().contains("lock"), "{err}");
    // An upload larger than the sockets' buffers is read to its end and refused with the reason
    // (answered before its body, the server would meet a reset connection).
    let length = 8 << 20;
    let req = WriteRequest {
        user: "root".into(),
        home: "/root".into(),
        shell_pid: None,
        file: "unlocked.bin".into(),
        length,
    };
    let (tx, body) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for _ in 0..length / (1 << 20) {
            if tx
                .send(bytes::Bytes::from(vec![b'x'; 1 << 20]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let err = c.agent().write_file(&req, body).await;
    let err = err.expect_err("an unlocked agent wrote a file");
    assert!(err.to_string().contains("lock its container down"), "{err}");
}

/// Nothing listening, or a peer that never answers the handshake: `Unreachable` within the
/// connect timeout, never a hang.
#[tokio::test]
async fn an_agent_that_does_not_answer_is_unreachable_in_time() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let agent = RemoteAgent::new(addr, SLOT, [1; 32]);
    assert!(matches!(
        agent.status().await,
        Err(AgentError::Unreachable { .. })
    ));
    // Accepts connections (the kernel does) but never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = RemoteAgent::new(silent.local_addr().unwrap().to_string(), SLOT, [1; 32])
        .with_connect_timeout(Duration::from_millis(500));
    let start = std::time::Instant::now();
    let err = fixture::open(&agent, "anyone")
        .await
        .err()
        .expect("no session");
    assert!(matches!(err, AgentError::Unreachable { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

/// Sends `bytes` on a fresh connection; whether the agent then closes it without a word.
fn closed_after(addr: &str, bytes: &[u8]) -> bool {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = stream.write_all(bytes);
    read_to_close(&mut stream)
}

/// Whether the peer closes the connection (no byte sent) within the read timeout.
fn read_to_close(stream: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// The default bridge's subnet and gateway: the address of its interface on this host (the
/// engine does not always list the gateway in the network's IPAM config).
fn docker_bridge() -> (String, String) {
    let format = "{{(index .IPAM.Config 0).Subnet}} \
                  {{index .Options \"com.docker.network.bridge.name\"}}";
    let (ok, out) = fixture::docker(&["network", "inspect", "bridge", "--format", format]);
    assert!(ok, "{out}");
    let (subnet, interface) = out.trim().split_once(' ').expect("subnet and interface");
    let ip = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", interface])
        .output()
        .expect("ip addr");
    let listing = String::from_utf8_lossy(&ip.stdout);
    let gateway = listing
        .split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address on {interface}: {listing}"));
    (subnet.to_owned(), gateway.to_owned())
}

async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Not a pass/fail figure: the keystroke echo and bulk output through the network agent beside
/// the unix-socket agent (PTY fd passed to this process) in the same container, printed for
/// docs/scaling.md.
#[tokio::test]
async fn echo_round_trip_remote_vs_unix_socket() {
    let c = AgentContainer::start("echo", &[]);
    c.ready().await;
    let (dave, _) = c.account(4).await;
    // The single-host agent, started beside the first (outside the lockdown: a docker exec).
    // In the container's directory, removed with it.
    let log = c.socket_path().with_file_name("unix-agent.log");
    let mut unix_agent = std::process::Command::new("docker")
        .args([
            "exec",
            "-e",
            "TERMPOOL_AGENT_SOCKET=/run/termpool/agent.sock",
            &c.name,
        ])
        .args([
            "env",
            "-u",
            "TERMPOOL_AGENT_LISTEN",
            "/usr/local/sbin/termpool-agent",
        ])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let conn = termpool::tty::agent::connect(&c.socket_path(), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| {
            let top = fixture::docker(&["top", &c.name]).1;
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "the unix-socket agent at {:?}: {e}\n{top}\n{log}",
                c.socket_path()
            )
        });
    let req = termpool_agent_proto::ShellRequest {
        user: dave.as_str().into(),
        home: format!("/workspace/{dave}").into(),
        cols: 80,
        rows: 24,
        env: vec!["TERM=xterm".to_string()].into(),
    };
    let mut local = termpool::tty::agent::spawn(conn, &req, Duration::from_secs(30))
        .await
        .expect("a unix-socket session");
    let mut proxied = open(&c.agent(), &dave).await.unwrap();
    // Straight to the container's address, without Docker's port proxy in between.
    let (ok, ip) = fixture::docker(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.IPAddress}}",
        &c.name,
    ]);
    assert!(ok, "{ip}");
    let direct = RemoteAgent::new(format!("{}:7100", ip.trim()), SLOT, c.psk);
    let mut remote = open(&direct, &dave).await.unwrap();
    let sessions = [
        ("unix socket", &mut local),
        ("network, direct", &mut remote),
        ("network, through docker-proxy", &mut proxied),
    ];
    for (name, s) in sessions {
        sh(s, "true").await;
        s.tty
            .write(b"stty -echoctl; cat >/dev/null\r")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut times = Vec::new();
        for i in 0..300 {
            let start = std::time::Instant::now();
            s.tty.write(b"a").await.unwrap();
            fixture::read_until(s, |seen| seen.contains('a')).await;
            times.push(start.elapsed());
            if i % 50 == 49 {
                s.tty.write(b"\r").await.unwrap();
            }
        }
        times.sort();
        let at = |q: usize| times[times.len() * q / 100];
        println!(
            "echo round trip, {name}: p50 {:?}, p90 {:?}, p99 {:?} (300 keystrokes)",
            at(50),
            at(90),
            at(99)
        );
        // Throughput: 20 MB of output, counted as it arrives.
        fixture::interrupt(s).await;
        const BULK: usize = 20_000_000;
        let start = std::time::Instant::now();
        s.tty.write(b"head -c 20000000 /dev/zero\r").await.unwrap();
        let mut got = 0;
        while got < BULK {
            let chunk = tokio::time::timeout(Duration::from_secs(30), s.output.read()).await;
            got += chunk.expect("output in time").expect("the session").len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!("throughput, {name}: {:.0} MB/s", BULK as f64 / secs / 1e6);
        s.tty.hangup().await;
    }
    let _ = unix_agent.kill();
    let _ = unix_agent.wait();
}
