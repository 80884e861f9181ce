//! The per-account disk quota (`USER_DISK_QUOTA_MB`, issue #15) through the real server, the real
//! Docker engine and the user image (`CONTAINER_IMAGE`, which the servers inherit), on a btrfs
//! workspace with quotas on that the test makes itself (a loop image bound as the pool's volume).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{http_request, TestPool};

/// The number printed after `key=` in `out`.
fn number(out: &str, key: &str) -> u64 {
    out.rsplit(&format!("{key}="))
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
}

/// A btrfs filesystem on a loop device with quotas enabled, made the pool's workspace volume (a
/// bind volume of the pool's name, which the pool uses instead of creating its own). Dropping it
/// removes the pool's containers and volume first, then unmounts, detaches and deletes the image.
struct BtrfsWorkspace {
    pool: Option<TestPool>,
    image: PathBuf,
    mount: PathBuf,
    device: String,
}

impl BtrfsWorkspace {
    /// Panics (the test fails, never skips) when the filesystem cannot be made.
    fn new(pool: TestPool, mb: u32) -> BtrfsWorkspace {
        let base = std::env::temp_dir().join(format!("{}-btrfs", pool.volume));
        let (image, mount) = (base.with_extension("img"), base.with_extension("mnt"));
        std::fs::create_dir_all(&mount).expect("make the mount point");
        let (img, mnt) = (
            image.to_string_lossy().into_owned(),
            mount.to_string_lossy().into_owned(),
        );
        run("truncate", &["-s", &format!("{mb}M"), &img]);
        run("mkfs.btrfs", &["-q", &img]);
        let device = run("losetup", &["--find", "--show", &img])
            .trim()
            .to_owned();
        let fs = BtrfsWorkspace {
            pool: Some(pool),
            image,
            mount,
            device,
        };
        run("mount", &[&fs.device, &mnt]);
        run("btrfs", &["quota", "enable", &mnt]);
        // As the pool's own volume is: users may enter their homes but not list the workspace.
        run("chmod", &["0711", &mnt]);
        let device_opt = format!("device={mnt}");
        TestPool::docker(&[
            "volume",
            "create",
            "--driver",
            "local",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            &device_opt,
            &fs.pool().volume,
        ]);
        fs
    }

    fn pool(&self) -> &TestPool {
        self.pool
            .as_ref()
            .expect("the pool lives as long as the filesystem")
    }
}

impl Drop for BtrfsWorkspace {
    fn drop(&mut self) {
        drop(self.pool.take());
        let _ = Command::new("umount").arg(&self.mount).output();
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
        let _ = std::fs::remove_dir(&self.mount);
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Runs a command of the test's setup; its stdout. Panics with its stderr when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (btrfs-progs, util-linux): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A user's attempt to make a subvolume in the home (SUBVOL_CREATE, then its V2): a nested
/// subvolume has a qgroup of its own, outside the home's limit. Prints MADE or REFUSED per call.
const NESTED_SUBVOLUME: &str = "import fcntl, os\n\
    home = os.open(os.path.expanduser('~'), os.O_RDONLY)\n\
    for request, at, name in ((0x5000940E, 8, b'sv1'), (0x50009418, 56, b'sv2')):\n\
    \x20   args = bytearray(4096)\n\
    \x20   args[at:at + 3] = name\n\
    \x20   try: fcntl.ioctl(home, request, args); print('MADE')\n\
    \x20   except OSError as e: print('REFUSED', e.strerror)\n";

/// With `USER_DISK_QUOTA_MB=4` on a btrfs workspace, user A's nested subvolume to escape the
/// limit is refused; A `dd`s 20 MB into the home: the filesystem stops A with `Disk quota
/// exceeded` within 4 MiB, an upload gets a 507 saying so, B on the same volume still writes
/// 3 MB, and A writes again once the file is deleted.
#[tokio::test]
async fn a_user_filling_the_workspace_is_stopped_by_the_quota_and_others_write_on() {
    let fs = BtrfsWorkspace::new(TestPool::new("quota"), 256);
    let server = fs.pool().server(1, 2, &["--user-disk-quota-mb", "4"]);
    let cookie = server.new_identity().await;
    let mut a = server.connect_as(&cookie, "").await;
    let session = a.ready().await.session.into_owned();
    a.sync().await;
    // The home the helper made: the account's, its group's, private.
    let owner = a
        .output_of("echo $(stat -c '%u:%g:%a' ~) $(id -u):$(id -g):700")
        .await;
    let (home, expected) = owner.split_once(' ').unwrap_or_default();
    assert_eq!(home, expected, "the home's owner, group and mode: {owner}");
    let escape = format!(
        "python3 -c \"$(printf '%s' '{}' | base64 -d)\"",
        base64(NESTED_SUBVOLUME.as_bytes())
    );
    // While the home has room (a full home refuses a new subvolume for want of space).
    let out = a.output_of(&escape).await;
    assert!(
        !out.contains("MADE"),
        "a subvolume outside the quota: {out}"
    );
    assert_eq!(
        out.matches("REFUSED Operation not permitted").count(),
        2,
        "{out}"
    );

    let out = a.output_of("dd if=/dev/zero of=~/big bs=1M count=20 2>&1 | grep -o 'Disk quota exceeded' | head -1; \
         sync; echo SIZE=$(stat -c %s ~/big)",
    )
    .await;
    assert!(out.contains("Disk quota exceeded"), "{out}");
    let size = number(&out, "SIZE");
    // btrfs stops a writer a little short of the limit (its reservations), never past it.
    assert!(size <= 4 << 20, "A wrote {size} bytes past a 4 MiB quota");
    assert!(
        size >= 3 << 20,
        "A was stopped at {size} bytes, well short of 4 MiB"
    );

    // An upload into the full home: a clear 507, and no partial file left.
    let path = format!("/api/upload?session={session}&name=up.bin");
    let headers = [("Cookie", cookie.as_str())];
    // Answered at once, with a body larger than the socket buffers: a `dd` stopped by the quota
    // reads no more of it, which once held the upload two minutes (and the silent client's
    // terminal, closed meanwhile for not answering pings).
    let upload = http_request(&server.addr, "POST", &path, &headers, &[7; 16 << 20]);
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), upload)
        .await
        .expect("an upload into a full home is answered, not held");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(
        (status, json["error"].as_str()),
        (507, Some("Disk quota exceeded")),
        "{json}"
    );
    let left = a.output_of("ls ~/up.bin 2>&1 | grep -c 'No such'").await;
    assert_eq!(left, "1", "the partial upload is removed");

    let mut b = server.connect("").await;
    b.ready().await;
    b.sync().await;
    let out = b.output_of("dd if=/dev/zero of=~/ok bs=1M count=3 2>&1 | grep -c 'quota'; echo SIZE=$(stat -c %s ~/ok)",
    )
    .await;
    assert_eq!(number(&out, "SIZE"), 3 << 20, "B could not write: {out}");

    let out = a
        .output_of(
            "rm ~/big && sync && dd if=/dev/zero of=~/again bs=1M count=2 2>&1 | grep -c 'quota'; \
         echo SIZE=$(stat -c %s ~/again)",
        )
        .await;
    assert_eq!(
        number(&out, "SIZE"),
        2 << 20,
        "A cannot write after deleting: {out}"
    );
}

/// A home that exists on the btrfs workspace but is a plain directory (made before the quota was
/// configured) cannot be limited by a qgroup: the account is refused, never left unlimited, and
/// the log tells the operator to move it into a subvolume.
#[tokio::test]
async fn a_home_that_is_not_a_subvolume_is_refused_on_btrfs() {
    let fs = BtrfsWorkspace::new(TestPool::new("quotaplain"), 256);
    // The first server, without a quota, makes the home the old way (a plain directory).
    let cookie = {
        let server = fs.pool().server(1, 2, &[]);
        let cookie = server.new_identity().await;
        let mut a = server.connect_as(&cookie, "").await;
        a.ready().await;
        a.sync().await;
        cookie
    };
    let pool = fs.pool();
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let server = pool.server_logged(1, 2, &["--user-disk-quota-mb", "4"], &log);
    refused(&server, &cookie).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("is not a btrfs subvolume") && text.contains("move it into a subvolume"),
        "the operator is told: {text}"
    );
}

/// The session of `cookie` gets no shell: 503 before the upgrade or an error frame after it.
async fn refused(server: &common::Server, cookie: &str) {
    match server.try_connect(cookie, "", None).await {
        Err((status, body)) => assert_eq!(status, 503, "{body}"),
        Ok(mut c) => {
            let error = c.next_error().await;
            assert!(
                !error.message.is_empty(),
                "a shell without its quota: {error:?}"
            );
        }
    }
}

/// `USER_DISK_QUOTA_MB` on a workspace without user quotas (Docker's ordinary volume): the quota
/// cannot be set, so the account is not made and the user gets an error, never an unlimited home.
#[tokio::test]
async fn a_quota_that_cannot_be_set_refuses_the_account_instead_of_leaving_it_unlimited() {
    let pool = TestPool::new("noquota");
    std::fs::create_dir_all(&pool.data_dir).expect("make the data directory");
    let log = pool.data_dir.join("server.log");
    let server = pool.server_logged(1, 2, &["--user-disk-quota-mb", "4"], &log);
    let cookie = server.new_identity().await;
    refused(&server, &cookie).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("quota helper for uid") && text.contains("cannot set the quota"),
        "the operator is told: {text}"
    );
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        out.push_str(&"=".repeat(3 - chunk.len()));
    }
    out
}
