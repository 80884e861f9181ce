//! Uploads on a real Docker Swarm (`scripts/swarm/up.sh`): a file uploaded into a session whose
//! container runs on another node than the server lands in the user's home there, written as
//! the user, exactly as on one host.

mod common;

use common::http_request;
use common::swarm::{node_of, shell, Stack, NODES};
use md5::Digest;

/// One slot per node, one user each: three users are on three nodes.
const SETTINGS: [(&str, &str); 4] = [
    ("MAX_CONTAINERS", "3"),
    ("SLOTS_PER_NODE", "1"),
    ("USERS_PER_CONTAINER", "1"),
    ("CONTAINER_NETWORK", "none"),
];

#[tokio::test(flavor = "multi_thread")]
async fn swarm_an_upload_lands_in_the_users_home_on_every_node() {
    let stack = Stack::deploy("upload", &SETTINGS);
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let cookie = stack.new_identity().await;
        let mut c = stack.connect_as(&cookie).await;
        let ready = c.ready().await;
        let slot = ready.container.as_deref().unwrap_or_default().to_owned();
        let session = ready.session.to_string();
        let user = ready.user.to_string();
        nodes.push(node_of(&slot).unwrap_or_else(|| panic!("no container for {slot}")));
        shell(&mut c, "cd ~").await;

        let body: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
        let name = format!("up-{i}.bin");
        let path = format!("/api/upload?session={session}&name={name}");
        let headers = [("Cookie", cookie.as_str())];
        let (status, _, answer) = http_request(&stack.addr, "POST", &path, &headers, &body).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(
            status,
            201,
            "upload into {slot}: {answer}\n{}",
            stack.server_log()
        );
        let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            json["path"],
            format!("/workspace/{user}/{name}"),
            "{answer}"
        );

        // The user's own file, whole.
        let seen = shell(&mut c, &format!("stat -c '%U %s' {name}; md5sum < {name}")).await;
        let digest: String = md5::Md5::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            seen,
            format!("{user} {}\n{digest}  -", body.len()),
            "{slot}"
        );

        // Never overwritten: the same name again is a conflict.
        let (status, _, _) = http_request(&stack.addr, "POST", &path, &headers, b"x").await;
        assert_eq!(status, 409, "a second upload of {name} into {slot}");
        if i == 0 {
            hostile_uploads(&stack, &mut c, &cookie, &session).await;
        }
    }
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), NODES, "the users are on every node");
}

/// What a user might try through an upload: write through a link of theirs into a file they
/// may not write, write where they may not, leave half a file behind.
async fn hostile_uploads(stack: &Stack, c: &mut common::Client, cookie: &str, session: &str) {
    let headers = [("Cookie", cookie)];
    let upload = |name: &str| format!("/api/upload?session={session}&name={name}");

    // A link named as the upload, to a root-owned file: refused, the file untouched.
    let before = shell(c, "md5sum < /etc/passwd").await;
    shell(c, "ln -s /etc/passwd link.txt").await;
    let (status, _, answer) = http_request(
        &stack.addr,
        "POST",
        &upload("link.txt"),
        &headers,
        b"owned\n",
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 409, "an upload through a link: {answer}");
    assert_eq!(shell(c, "md5sum < /etc/passwd").await, before);

    // The shell in a directory the user may not write: refused, as the user.
    shell(c, "cd /").await;
    let (status, _, answer) =
        http_request(&stack.addr, "POST", &upload("root.txt"), &headers, b"x").await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 403, "an upload into /: {answer}");
    // The same words as on one host: the directory, not the agent's error.
    assert!(
        answer.contains("permission denied: / is not writable") && !answer.contains("os error"),
        "{answer}"
    );
    assert_eq!(shell(c, "ls /root.txt 2>&1 | grep -c 'No such'").await, "1");
    shell(c, "cd ~").await;

    // A body that stops short of its length: nothing is left.
    {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::TcpStream::connect(&stack.addr).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nContent-Length: 100000\r\n\r\n",
            upload("half.bin"),
            stack.addr
        );
        raw.write_all(head.as_bytes()).await.unwrap();
        raw.write_all(&[1; 30_000]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mut left = String::new();
    for _ in 0..20 {
        left = shell(c, "ls ~/half.bin 2>&1 | grep -c 'No such'").await;
        if left == "1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(left, "1", "a half upload is left behind");
}
