//! The `termpool` binary: configuration, logging, the chosen backend, and the web server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;

use termpool::blocks::{Blocklist, SharedStore};
use termpool::config::{Args, BackendOptions, Options};
use termpool::identity::{CookieSigner, Identifier};
use termpool::metrics::Metrics;
use termpool::pool::swarm::MasterKey;
use termpool::pool::{OperatorStore, Pool, PoolConfig, SqliteStore, Store, SwarmStore};
use termpool::session::Registry;
use termpool::tty::container::DockerBackend;
use termpool::tty::local::LocalBackend;
use termpool::tty::Backend;
use termpool::web::{self, AppState};
use termpool::workspace::{tools, Workspace};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let options = match Args::parse().into_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("termpool: {e}");
            std::process::exit(2);
        }
    };
    raise_fd_limit(options.limits.max_total);
    if let Err(e) = actix_web::rt::System::new().block_on(run(options)) {
        eprintln!("termpool: {e:#}");
        std::process::exit(1);
    }
}

async fn run(options: Options) -> anyhow::Result<()> {
    let mut tools_dir = None;
    let swarm = SwarmWeb::of(&options.backend);
    let backend: Arc<dyn Backend> = match options.backend {
        BackendOptions::Containers(pool) => {
            let dir = options.data_dir.clone().unwrap_or_default();
            Arc::new(container_backend(*pool, &dir).await?)
        }
        BackendOptions::Local { shell } => {
            let (backend, dir) = local_backend(shell, options.server.max_download_mb)?;
            tools_dir = Some(dir);
            Arc::new(backend)
        }
    };
    let (signer, store) = match swarm {
        Some(swarm) => swarm.persistence().await?,
        None => local_persistence(options.data_dir.as_deref())?,
    };
    let blocks = Blocklist::load(store.clone()).context("cannot read the blocks from the store")?;
    if options.server.admin.is_some() && !blocks.is_persistent() {
        log::warn!("no DATA_DIR: blocks made through the admin API end with the process");
    }
    let metrics = Arc::new(Metrics::default());
    let workspace = Workspace::open(
        store.clone(),
        options.limits.ipv6_prefix_len,
        options.server.max_uploads_per_user,
    );
    let state = AppState {
        workspace,
        registry: Registry::new(options.limits, metrics.clone()),
        backend,
        identifier: Identifier {
            mode: options.identity,
            signer,
        },
        metrics,
        options: options.server,
        blocks: Arc::new(blocks),
        store,
    };
    let served = web::serve(state).await;
    if let Some(dir) = tools_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    served
}

/// The local backend, with the server's own commands (`download`) on its shells' PATH, and the
/// directory holding them (removed when the server stops).
fn local_backend(
    shell: Vec<String>,
    max_download_mb: u64,
) -> anyhow::Result<(LocalBackend, std::path::PathBuf)> {
    let (dir, env) =
        tools::install(max_download_mb).context("cannot install the download command")?;
    let backend = LocalBackend::new(shell).with_tools(dir.display().to_string(), env);
    Ok((backend, dir))
}

/// File descriptors a session holds (its socket, its PTY, a pidfd or the agent's connection),
/// with some room.
const FDS_PER_SESSION: u64 = 4;

/// Raises the soft limit of open files to what `max_sessions` need (0: as far as allowed), so
/// that the cap, not a failing `open`, turns sessions away: the usual soft limit of 1024 runs out
/// near 300 sessions. Not beyond: the shells inherit it, and some programs close every possible
/// descriptor one by one.
fn raise_fd_limit(max_sessions: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let needed = match max_sessions as u64 {
        0 => limit.rlim_max,
        n => n.saturating_mul(FDS_PER_SESSION).saturating_add(64),
    };
    let wanted = needed.min(limit.rlim_max);
    if wanted > limit.rlim_cur {
        limit.rlim_cur = wanted;
        // SAFETY: setrlimit only reads `limit`.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
    if needed > limit.rlim_max {
        log::warn!(
            "the open-file limit ({}) is too low for MAX_SESSIONS={max_sessions}: sessions \
             will fail before the cap refuses them; raise it (ulimit -n) or lower MAX_SESSIONS",
            limit.rlim_max
        );
    }
}

/// The store's file in `dir`.
fn store_path(dir: &Path) -> PathBuf {
    dir.join("placements.sqlite")
}

/// The cookie key and the web layer's own connection to the store (blocks, access keys), in
/// DATA_DIR when there is one; in container mode the pool has opened (and upgraded) the file
/// already.
fn local_persistence(dir: Option<&Path>) -> anyhow::Result<(CookieSigner, Option<SharedStore>)> {
    let Some(dir) = dir else {
        return Ok((CookieSigner::ephemeral(), None));
    };
    let signer = CookieSigner::persistent(dir)
        .with_context(|| format!("cannot keep the cookie key in {}", dir.display()))?;
    let path = store_path(dir);
    let store: Box<dyn OperatorStore> = Box::new(
        SqliteStore::open(&path)
            .with_context(|| format!("cannot open the store {}", path.display()))?,
    );
    Ok((signer, Some(Arc::new(Mutex::new(store)))))
}

/// What the web layer of a pool on Swarm keeps, and where: nothing in DATA_DIR (a local volume
/// of one manager), so that the server's move to another manager keeps every user's cookie,
/// access key and block.
struct SwarmWeb {
    master_key: MasterKey,
    pool_label: String,
    uid_min: u32,
}

impl SwarmWeb {
    fn of(backend: &BackendOptions) -> Option<SwarmWeb> {
        let BackendOptions::Containers(pool) = backend else {
            return None;
        };
        let swarm = pool.swarm.as_ref()?;
        Some(SwarmWeb {
            master_key: swarm.master_key.clone(),
            pool_label: pool.pool_label.clone(),
            uid_min: pool.uid_min,
        })
    }

    /// The cookie key derived from the master key (the same on every manager), and a connection
    /// of the web layer's own to the Swarm store.
    async fn persistence(self) -> anyhow::Result<(CookieSigner, Option<SharedStore>)> {
        let signer = CookieSigner::derived(self.master_key.bytes());
        let store: Box<dyn OperatorStore> =
            Box::new(swarm_store(&self.pool_label, self.uid_min).await?);
        Ok((signer, Some(Arc::new(Mutex::new(store)))))
    }
}

/// Opens the placement store and brings the container pool up. Refuses to start rather than
/// run without the store: placements and UIDs must never be lost or reused.
async fn container_backend(pool: PoolConfig, dir: &Path) -> anyhow::Result<DockerBackend> {
    let store: Box<dyn Store> = match pool.swarm {
        Some(_) => Box::new(swarm_store(&pool.pool_label, pool.uid_min).await?),
        None => Box::new(sqlite_store(&pool, dir)?),
    };
    warn_if_tmp_unprotected();
    let pool = Pool::start(pool, store)
        .await
        .context("cannot start the container pool")?;
    DockerBackend::new(pool).context("cannot reach the container engine")
}

/// The placement store in DATA_DIR, for a pool on one engine.
fn sqlite_store(pool: &PoolConfig, dir: &Path) -> anyhow::Result<SqliteStore> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create DATA_DIR {}", dir.display()))?;
    let path = store_path(dir);
    let mut store = SqliteStore::open(&path)
        .with_context(|| format!("cannot open the placement store {}", path.display()))?;
    store
        .raise_uid_floor(pool.uid_min)
        .context("cannot set UID_BASE in the placement store")?;
    Ok(store)
}

/// The placement store in the Swarm's own Raft store, for a pool on Swarm: every manager holds
/// it, so the server restarted or moved to another manager finds every placement.
async fn swarm_store(pool_label: &str, uid_min: u32) -> anyhow::Result<SwarmStore> {
    let docker = bollard::Docker::connect_with_defaults()
        .context("cannot reach the Docker engine")?
        .negotiate_version()
        .await
        .context("cannot reach the Docker engine")?;
    let mut store = SwarmStore::new(docker, pool_label)
        .context("cannot open the placement store in the Swarm")?;
    store
        .raise_uid_floor(uid_min)
        .context("cannot set UID_BASE in the placement store")?;
    Ok(store)
}

/// Users of one container share its /tmp. Whether one can plant a symlink or a file there for
/// another to fall into depends on the host's fs.protected_* settings, which a container sees
/// and cannot change.
fn warn_if_tmp_unprotected() {
    for (name, want) in [
        ("protected_symlinks", 1),
        ("protected_hardlinks", 1),
        ("protected_regular", 2),
        ("protected_fifos", 2),
    ] {
        let path = format!("/proc/sys/fs/{name}");
        let value: Option<u32> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|v| v.trim().parse().ok());
        if value.is_none_or(|v| v < want) {
            log::error!(
                "fs.{name} is {value:?} on this host: users sharing a container can trap each \
                 other through /tmp. Set it to {want} (sysctl -w fs.{name}={want}); see README"
            );
        }
    }
}
