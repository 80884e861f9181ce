//! Uploads and downloads in container mode, with the real Docker engine and the user image: files
//! are written as the session's user (never root), never over another user's file or through a
//! symlink out of the home, and `download` is in the image.

mod common;

use common::{http_request, TestPool};
use serde_json::Value;

async fn upload(addr: &str, cookie: &str, session: &str, name: &str, body: &[u8]) -> (u16, Value) {
    let path = format!("/api/upload?session={session}&name={name}");
    let headers = [("Cookie", cookie)];
    let (status, _, body) = http_request(addr, "POST", &path, &headers, body).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn uploads_are_written_as_the_user_and_never_over_what_is_not_theirs() {
    let pool = TestPool::new("upl");
    let server = pool.server(1, 4, &[]);
    let alice = server.new_identity().await;
    let mut a = server.connect_as(&alice, "").await;
    let ready = a.ready().await;
    let (user, session) = (ready.user.to_string(), ready.session.to_string());
    a.run("mkdir -p sub && cd sub && echo IN=$((6*7))").await;
    a.expect_output("IN=42").await;

    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let (status, json) = upload(&server.addr, &alice, &session, "blob.bin", &content).await;
    assert_eq!(status, 201, "{json}");
    assert_eq!(json["path"], format!("/workspace/{user}/sub/blob.bin"));
    a.run("echo OWN=$(stat -c %U:%s blob.bin)=").await;
    a.expect_output(&format!("OWN={user}:{}=", content.len()))
        .await;
    a.run("cksum < blob.bin").await;
    let expected = std::process::Command::new("sh")
        .args(["-c", "head -c 100000 /dev/stdin | cksum"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&content)?;
            child.wait_with_output()
        })
        .unwrap();
    let sum = String::from_utf8(expected.stdout).unwrap();
    a.expect_output(sum.trim()).await;

    // Never over an existing file, never through a symlink pointing out of the home.
    let (status, _) = upload(&server.addr, &alice, &session, "blob.bin", b"x").await;
    assert_eq!(status, 409);
    a.run("ln -s /tmp/planted-target link && echo LN=$((1+1))")
        .await;
    a.expect_output("LN=2").await;
    let (status, _) = upload(&server.addr, &alice, &session, "link", b"through").await;
    assert_eq!(status, 409);
    a.run("echo T=$(ls /tmp/planted-target 2>&1 | grep -c 'No such')=")
        .await;
    a.expect_output("T=1=").await;

    // Another user: not into a directory they may not write (root could), not over alice's file.
    let bob = server.new_identity().await;
    let mut b = server.connect_as(&bob, "").await;
    let bob_session = b.ready().await.session.to_string();
    b.run("cd / && echo ROOT=$((2*3))").await;
    b.expect_output("ROOT=6").await;
    let (status, json) = upload(&server.addr, &bob, &bob_session, "rootfile", b"x").await;
    assert_eq!(status, 403, "written as the user, not as root: {json}");
    a.run("echo mine > /tmp/alices && chmod 644 /tmp/alices && echo AL=$((3*3))")
        .await;
    a.expect_output("AL=9").await;
    b.run("cd /tmp && echo TMP=$((4*4))").await;
    b.expect_output("TMP=16").await;
    let (status, _) = upload(&server.addr, &bob, &bob_session, "alices", b"bob's").await;
    assert_eq!(status, 409);
    a.run("cat /tmp/alices").await;
    a.expect_output("mine").await;
    // Nor into alice's session.
    let (status, _) = upload(&server.addr, &bob, &session, "x", b"x").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn download_is_a_command_of_the_user_image() {
    let pool = TestPool::new("dl");
    let server = pool.server(1, 2, &[]);
    let mut c = server.connect("").await;
    c.ready().await;
    c.run("printf 'hello\\n' > h.txt && download h.txt").await;
    // base64("h.txt") = aC50eHQ=, base64("hello\n") = aGVsbG8K
    c.expect_bytes(b"\x1b]1337;File=name=aC50eHQ=;size=6;inline=0:aGVsbG8K\x07")
        .await;
}

#[tokio::test]
async fn uploads_follow_the_shell_of_a_docker_exec_session_too() {
    let pool = TestPool::new("uplx");
    let server = pool.server(1, 2, &["--session-agent", "false"]);
    let cookie = server.new_identity().await;
    let mut c = server.connect_as(&cookie, "").await;
    let ready = c.ready().await;
    c.run("mkdir -p deeper && cd deeper && echo IN=$((5*5))")
        .await;
    c.expect_output("IN=25").await;
    let (status, json) = upload(&server.addr, &cookie, &ready.session, "n.txt", b"exec\n").await;
    assert_eq!(status, 201, "{json}");
    assert_eq!(
        json["path"],
        format!("/workspace/{}/deeper/n.txt", ready.user)
    );
    c.run("cat n.txt").await;
    c.expect_output("exec").await;
}

/// `download` runs as the user: another user's private file, straight or through a symlink in
/// the user's own home, is refused, and not one byte of it reaches the terminal.
#[tokio::test]
async fn download_reads_nothing_another_user_may_not_show() {
    let pool = TestPool::new("dlx");
    let server = pool.server(1, 2, &[]);
    let mut b = server.connect("").await;
    b.ready().await;
    // Markers are printed split (`B_""DONE`) so the echo of the typed line cannot match them.
    b.run("umask 077; printf 'secret-of-b' > /tmp/b-secret; echo B_\"\"DONE")
        .await;
    b.expect_output("B_DONE").await;
    let mut a = server.connect("").await;
    a.ready().await;
    a.run("download /tmp/b-secret; echo RC1\"\"=$?").await;
    let direct = a.expect_output("RC1=").await;
    a.run("ln -s /tmp/b-secret ~/link && download ~/link; echo RC2\"\"=$?")
        .await;
    let linked = a.expect_output("RC2=").await;
    a.run("echo A_\"\"DONE").await;
    let rest = a.expect_output("A_DONE").await;
    for out in [&direct, &linked, &rest] {
        assert!(
            !out.contains("\x1b]1337"),
            "a file sequence was written: {out:?}"
        );
        // base64("secret-of-b") and the text itself
        assert!(
            !out.contains("c2VjcmV0LW9mLWI") && !out.contains("secret-of-b\r"),
            "{out:?}"
        );
    }
    assert!(direct.contains("not a readable file"), "{direct:?}");
    assert!(linked.contains("not a readable file"), "{linked:?}");
    assert!(rest.starts_with('1'), "download must fail: {rest:?}");
}
