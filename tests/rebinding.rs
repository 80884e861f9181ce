//! DNS rebinding against a real container-mode server bound to all interfaces with no
//! `ALLOWED_HOSTS`: it warns at start and answers only to IP address literals and localhost, so a
//! page whose own name an attacker points at the server is refused.

mod common;

use common::{http_get, log_lines_with, TestPool};

#[tokio::test]
async fn a_pool_on_a_public_address_answers_only_to_addresses_and_localhost() {
    let pool = TestPool::new("rebind");
    let log = pool.data_dir.with_extension("log");
    let server = pool.server_logged(1, 1, &["--bind", "0.0.0.0"], &log);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let warned = log_lines_with(&log, "ALLOWED_HOSTS is not set");
    assert_eq!(warned.len(), 1, "a clear warning at start");
    let status = |host: String| {
        let addr = server.addr.clone();
        async move { http_get(&addr, "/", &[("Host", &host)]).await.0 }
    };
    for name in [
        "evil.example",
        "rebind.attacker.test",
        "localhost.evil.example",
    ] {
        assert_eq!(status(format!("{name}:{port}")).await, 403, "{name}");
    }
    for name in [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "192.0.2.10",
        "[2001:db8::1]",
    ] {
        assert_eq!(status(format!("{name}:{port}")).await, 200, "{name}");
    }
    let _ = std::fs::remove_file(&log);
}
