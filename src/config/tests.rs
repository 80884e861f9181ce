use super::pool::check_uid_range;
use super::*;
use clap::Parser;

fn parse(args: &[&str]) -> Result<Options, String> {
    let args = std::iter::once("termpool").chain(args.iter().copied());
    let args = Args::try_parse_from(args).map_err(|e| e.to_string())?;
    args.into_options().map_err(|e| e.to_string())
}

#[test]
fn uid_ranges_holding_the_server_or_system_uids_are_refused() {
    assert!(check_uid_range(200_000, &[0, 0]).is_ok());
    assert!(check_uid_range(200_000, &[1000, 199_999]).is_ok());
    let e = check_uid_range(200_000, &[0, 200_000]).unwrap_err();
    assert_eq!(e.var, "UID_BASE");
    assert!(e.reason.contains("200000"), "{e}");
    assert!(check_uid_range(300_000, &[350_000, 0]).is_err());
    assert!(check_uid_range(999, &[0, 0]).is_err());
}

/// The message a bad setting stops the server with; it must name the setting.
fn refusal(args: &[&str]) -> String {
    parse(args).err().expect("a bad setting is refused")
}

fn pool(args: &[&str]) -> PoolConfig {
    match parse(args).unwrap().backend {
        BackendOptions::Containers(pool) => *pool,
        BackendOptions::Local { .. } => panic!("not container mode"),
    }
}

#[test]
fn host_names_default_to_loopback_names_only_on_loopback() {
    let hosts = |args: &[&str]| parse(args).unwrap().server.allowed_hosts;
    assert_eq!(hosts(&[]).unwrap(), ["localhost", "127.0.0.1", "::1"]);
    assert_eq!(hosts(&["--bind", "0.0.0.0"]), None);
    let named = hosts(&["--allowed-hosts", "Term.Example.ORG.,[::1]"]);
    assert_eq!(named.unwrap(), ["term.example.org", "::1"]);
    assert_eq!(hosts(&["--allowed-hosts", "a,*"]), None);
    let pool = parse(&["--use-containers"]).unwrap().server;
    assert!(pool.ip_literal_hosts);
    assert_eq!(
        pool.allowed_hosts.unwrap(),
        ["localhost", "127.0.0.1", "::1"]
    );
    let named = parse(&["--use-containers", "--allowed-hosts", "t.example"]).unwrap();
    assert!(named.server.ip_literal_hosts);
    assert_eq!(
        named.server.allowed_hosts.unwrap(),
        ["t.example", "localhost"]
    );
    let any = parse(&["--use-containers", "--allowed-hosts", "*"]).unwrap();
    assert_eq!(any.server.allowed_hosts, None);
    assert!(refusal(&["--allowed-hosts", "https://x.org"]).contains("ALLOWED_HOSTS"));
}

#[test]
fn base_paths_are_normalized_or_refused() {
    let base = |p: &str| parse(&["--base-path", p]).map(|o| o.server.base_path);
    assert_eq!(parse(&[]).unwrap().server.base_path, "/");
    assert_eq!(base("/terminal").unwrap(), "/terminal/");
    assert_eq!(base("//a//b/").unwrap(), "/a/b/");
    for bad in ["terminal/", "/a/../b", "/a b/", "/a?x", "/%2e/"] {
        assert!(base(bad).unwrap_err().contains("BASE_PATH"), "{bad}");
    }
}

#[test]
fn defaults_are_valid_and_local_binds_loopback() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.server.bind.port(), 3000);
    assert_eq!(c.server.bind.ip().to_string(), "127.0.0.1");
    assert_eq!(c.server.max_frame_bytes, 1 << 20);
}

#[test]
fn agent_directories_are_absolute_and_fit_a_socket_path() {
    let dir = pool(&["--use-containers", "true", "--data-dir", "relative/data"])
        .agent_dir
        .unwrap();
    assert!(
        dir.is_absolute() && dir.ends_with("relative/data/agents"),
        "{dir:?}"
    );
    let c = pool(&["--use-containers", "true", "--session-agent", "false"]);
    assert_eq!(c.agent_dir, None);
    let long = format!("/{}", "d".repeat(90));
    assert!(refusal(&["--use-containers", "true", "--agent-dir", &long]).contains("AGENT_DIR"));
}

#[test]
fn container_mode_binds_all_interfaces_by_default() {
    let c = parse(&["--use-containers", "true"]).unwrap();
    assert_eq!(c.server.bind.ip().to_string(), "0.0.0.0");
}

#[test]
fn switches_work_bare_and_with_a_value() {
    assert!(matches!(
        parse(&["--use-containers"]).unwrap().backend,
        BackendOptions::Containers(_)
    ));
    assert!(matches!(
        parse(&["--use-containers", "false"]).unwrap().backend,
        BackendOptions::Local { .. }
    ));
    let c = pool(&["--use-containers", "--session-agent", "--port", "1"]);
    assert!(c.agent_dir.is_some());
}

#[test]
fn bad_values_name_their_variable() {
    assert!(refusal(&["--shell", "  "]).contains("SHELL_COMMAND"));
    assert!(refusal(&["--busy-poll-us", "1000001"]).contains("BUSY_POLL_US"));
    parse(&["--busy-poll-us", "0"]).unwrap();
    assert!(refusal(&["--max-frame-bytes", "1000"]).contains("MAX_FRAME_BYTES"));
    assert!(refusal(&["--allowed-origins", "evil.com"]).contains("ALLOWED_ORIGINS"));
    assert!(refusal(&["--identity-mode", "header"]).contains("TRUSTED_PROXIES"));
    let bad_block = [
        "--identity-mode",
        "header",
        "--trusted-proxies",
        "10.0.0.0/99",
    ];
    assert!(refusal(&bad_block).contains("TRUSTED_PROXIES"));
    assert!(
        refusal(&["--trusted-proxies", "10.0.0.1,nonsense"]).contains("TRUSTED_PROXIES"),
        "checked in every mode"
    );
    let proxies = parse(&["--trusted-proxies", "10.0.0.0/8, ,::1"]).unwrap();
    assert_eq!(proxies.server.trusted_proxies.len(), 2);
    assert!(refusal(&["--identity-mode", "token"]).contains("TOKEN_FILE"));
    let missing = ["--identity-mode", "token", "--token-file", "/nonexistent"];
    assert!(refusal(&missing).contains("TOKEN_FILE"));
    let empty_container = ["--use-containers", "true", "--users-per-container", "0"];
    assert!(refusal(&empty_container).contains("USERS_PER_CONTAINER"));
}
