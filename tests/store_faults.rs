//! The placement store must be writable: a server that cannot persist placements refuses to start
//! with a clear message rather than hand out UIDs it could forget. (The store is opened before
//! the container engine is contacted, so these run without Docker.)

use std::process::{Command, Output};

fn start_container_mode(data_dir: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_termpool"))
        .args([
            "--use-containers",
            "true",
            "--port",
            "0",
            "--data-dir",
            data_dir,
        ])
        .output()
        .expect("run termpool")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("termpool-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_store_that_cannot_be_created_stops_the_server() {
    let dir = scratch("storefile");
    // A regular file where the data directory should be.
    let blocked = dir.join("not-a-dir");
    std::fs::write(&blocked, b"x").unwrap();
    let out = start_container_mode(blocked.to_str().unwrap());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DATA_DIR"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_store_stops_the_server() {
    let dir = scratch("corrupt");
    std::fs::write(dir.join("placements.sqlite"), vec![0x42; 8192]).unwrap();
    let out = start_container_mode(dir.to_str().unwrap());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("placement store"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A full disk, made real with a tiny tmpfs (root is needed to mount it, as in CI).
#[test]
fn a_full_disk_stops_the_server() {
    let dir = scratch("full");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .status()
        .expect("mount");
    assert!(mounted.success(), "this test mounts a tmpfs and needs root");
    // Fill it up.
    let filler = vec![0u8; 4096];
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    while std::io::Write::write_all(&mut f, &filler).is_ok() {}
    drop(f);
    let out = start_container_mode(dir.to_str().unwrap());
    let _ = Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("placement store") || err.contains("cookie key"),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("full") || err.contains("No space"),
        "{err}"
    );
}
