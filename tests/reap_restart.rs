//! Idle reaping survives a restart: the real server and Docker engine; a job left by a user who
//! never comes back is ended by the next server, which knows of the user only from the store.

mod common;

use std::time::Duration;

use common::{eventually, TestPool, WAIT};

#[tokio::test]
async fn a_restarted_server_reaps_an_account_idle_since_before_it_started() {
    let pool = TestPool::new("reaprs");
    let long = ["--reattach-grace-secs", "0", "--idle-reap-secs", "3600"];
    let server = pool.server(1, 4, &long);
    let mut c = server.connect("").await;
    let ready = c.ready().await;
    let container = ready.container.as_deref().unwrap_or_default().to_owned();
    let uid = c.uid().await;
    c.run("setsid sleep 4322 </dev/null >/dev/null 2>&1 &")
        .await;
    let job = || {
        TestPool::processes_of(&container, uid)
            .iter()
            .any(|p| p.contains("sleep 4322"))
    };
    assert!(eventually(WAIT, job).await, "the job started");
    drop(c);
    drop(server);
    assert!(job(), "the job outlives the server");

    let short = ["--reattach-grace-secs", "0", "--idle-reap-secs", "2"];
    let _restarted = pool.server(1, 4, &short);
    let ended = eventually(Duration::from_secs(20), || !job()).await;
    assert!(ended, "the restarted server reaped the idle account's job");
}
