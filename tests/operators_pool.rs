//! What an operator sees and does in container mode, against the real Docker engine: occupancy
//! per container in /metrics, the pool's users in the admin API, and ending a user's sessions and
//! every process of its account.

mod common;

use std::collections::HashMap;

use common::{http_request, Frame, TestPool, WAIT};
use serde_json::Value;

const TOKEN: &str = "pool-admin-token-0123456789";

async fn admin(addr: &str, method: &str, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let (status, _, body) =
        http_request(addr, method, path, &[("Authorization", &auth)], b"").await;
    let text = String::from_utf8_lossy(&body).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The value of the metric line `name{container="container"}`.
fn per_container(metrics: &str, name: &str, container: &str) -> Option<u64> {
    let prefix = format!("{name}{{container=\"{container}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_occupancy_and_end_a_users_processes() {
    let pool = TestPool::new("ops");
    std::fs::create_dir_all(&pool.data_dir).unwrap();
    let token_file = pool.data_dir.join("admin-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let log = std::env::temp_dir().join(format!("{}.log", pool.prefix));
    let server = pool.server_logged(
        2,
        2,
        &["--admin-token-file", token_file.to_str().unwrap()],
        &log,
    );
    let mut clients = Vec::new();
    let mut per: HashMap<String, u64> = HashMap::new();
    for _ in 0..3 {
        let mut c = server.connect("").await;
        let ready = c.ready().await;
        let container = ready.container.as_deref().unwrap().to_owned();
        *per.entry(container.clone()).or_default() += 1;
        clients.push((c, ready.user.to_string(), container));
    }
    let (_, _, body) = common::http_get(&server.addr, "/metrics", &[]).await;
    let metrics = String::from_utf8(body).unwrap();
    for slot in 0..2 {
        let name = format!("{}-{slot}", pool.prefix);
        let want = per.get(&name).copied().unwrap_or(0);
        let users = per_container(&metrics, "termpool_container_users", &name);
        let sessions = per_container(&metrics, "termpool_container_sessions", &name);
        assert_eq!(
            (users, sessions),
            (Some(want), Some(want)),
            "{name}: {metrics}"
        );
    }

    // The admin API lists each user with its container, UID and live session.
    let (status, listed) = admin(&server.addr, "GET", "/admin/users").await;
    assert_eq!(status, 200, "{listed}");
    let users = listed["users"].as_array().unwrap();
    assert_eq!(users.len(), 3, "{listed}");
    for (_, account, container) in &clients {
        let u = users
            .iter()
            .find(|u| u["user"] == account.as_str())
            .unwrap();
        assert_eq!(u["container"], container.as_str());
        assert_eq!(u["live_sessions"], 1);
        assert!(u["uid"].as_u64().unwrap() >= u64::from(pool.uid_base));
        assert!(u["last_activity"].as_i64().unwrap() > 1_700_000_000);
    }

    // Ending the first user: its session closes, its detached job dies, the others stay.
    let (mut victim, account, container) = clients.remove(0);
    let uid = users
        .iter()
        .find(|u| u["user"] == account.as_str())
        .unwrap()["uid"]
        .as_u64()
        .unwrap() as u32;
    victim
        .run("nohup setsid sleep 7777 >/dev/null 2>&1 &")
        .await;
    assert!(
        common::eventually(WAIT, || TestPool::processes_of(&container, uid)
            .iter()
            .any(|p| p.contains("sleep 7777")))
        .await,
        "the job did not start"
    );
    let (status, ended) = admin(&server.addr, "POST", &format!("/admin/users/{account}/end")).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["sessions_ended"], 1);
    assert_eq!(ended["processes_ended"], true);
    loop {
        match victim.next_frame(WAIT).await {
            Some(Frame::Closed(_)) => break,
            None => panic!("the user's session was not ended"),
            Some(_) => {}
        }
    }
    assert!(
        TestPool::processes_of(&container, uid).is_empty(),
        "processes left: {:?}",
        TestPool::processes_of(&container, uid)
    );
    let survivor = &mut clients[0].0;
    survivor.run("echo still-here").await;
    survivor.expect_output("still-here").await;
    let audit = common::log_lines_with(&log, "action=end_user");
    assert!(
        audit
            .iter()
            .any(|l| l.contains(&format!("account={account}"))),
        "{audit:?}"
    );
    let _ = std::fs::remove_file(&log);
}
