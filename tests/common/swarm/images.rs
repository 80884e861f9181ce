//! The images a test stack runs: the user image, and a server image around the test's own
//! `termpool` binary, put where `scripts/swarm-deploy.sh` takes them from (node 1).

use std::process::{Command, Output};

use super::{dk_try, node_sock, repo, run};

/// The user image: `CONTAINER_IMAGE` (the tests' image built from this tree) or the default.
pub fn user_image() -> String {
    std::env::var("CONTAINER_IMAGE").unwrap_or_else(|_| "terminal-multi-user:latest".into())
}

/// A server image around this test's own `termpool` binary (Dockerfile.server, the binary
/// stripped), tagged by the binary's content; built once per test binary.
pub fn server_image() -> String {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(build_server_image).clone()
}

fn build_server_image() -> String {
    let ctx = std::env::temp_dir().join(format!("termpool-swarm-ctx-{}", std::process::id()));
    let bin = ctx.join("target/release/termpool");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    let strip = run(Command::new("strip")
        .args(["-o", bin.to_str().unwrap()])
        .arg(env!("CARGO_BIN_EXE_termpool")));
    if !strip.status.success() {
        std::fs::copy(env!("CARGO_BIN_EXE_termpool"), &bin).unwrap();
    }
    let sum = run(Command::new("sha256sum").arg(&bin));
    let tag = format!(
        "termpool-swarmtest-server:{}",
        &String::from_utf8_lossy(&sum.stdout)[..16]
    );
    let base = std::env::var("BASE_IMAGE").unwrap_or_else(|_| "termpool-base:bookworm".into());
    let out = run(Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", &tag, "--build-arg"])
        .arg(format!("BASE_IMAGE={base}"))
        .arg("-f")
        .arg(repo().join("Dockerfile.server"))
        .arg(&ctx));
    let _ = std::fs::remove_dir_all(&ctx);
    assert!(
        out.status.success(),
        "building {tag} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

/// Copies `image` from the host engine into node 1 unless it holds that very image already
/// (swarm-deploy.sh copies it from there to the other nodes).
pub(super) fn load_into_manager(image: &str) {
    let id = |out: Output| String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let host_id = id(run(
        Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", image])
    ));
    assert!(!host_id.is_empty(), "no image {image} on the host engine");
    if dk_try(1, &["image", "inspect", "-f", "{{.Id}}", image]).ok() == Some(host_id) {
        return;
    }
    let script = format!(
        "docker save '{image}' | docker -H unix://{} load -q",
        node_sock(1)
    );
    let out = run(Command::new("sh").args(["-c", &script]));
    assert!(out.status.success(), "loading {image} into node 1 failed");
}
