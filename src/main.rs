//! The `termpool` binary: configuration, logging, the chosen backend, and the web server.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use termpool::config::Config;
use termpool::identity::{CookieSigner, Identifier};
use termpool::metrics::Metrics;
use termpool::pool::{Pool, SqliteStore};
use termpool::session::{Limits, Registry};
use termpool::tty::docker::DockerBackend;
use termpool::tty::local::LocalBackend;
use termpool::tty::Backend;
use termpool::web::{self, AppState};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("termpool: {e}");
        std::process::exit(2);
    }
    if let Err(e) = actix_web::rt::System::new().block_on(run(config)) {
        eprintln!("termpool: {e:#}");
        std::process::exit(1);
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let backend: Arc<dyn Backend> = if config.use_containers {
        Arc::new(container_backend(&config).await?)
    } else {
        Arc::new(LocalBackend::new(config.shell_argv()))
    };
    let signer = match config.data_dir() {
        Some(dir) => CookieSigner::persistent(&dir)
            .with_context(|| format!("cannot keep the cookie key in {}", dir.display()))?,
        None => CookieSigner::ephemeral(),
    };
    let metrics = Arc::new(Metrics::default());
    let limits = Limits {
        max_live: config.max_sessions_per_user,
        max_per_minute: config.max_new_sessions_per_minute,
        grace: Duration::from_secs(config.reattach_grace_secs),
        idle_reap: Duration::from_secs(config.idle_reap_secs),
    };
    let identifier = Identifier {
        mode: config.identity_mode()?,
        signer,
    };
    let state = AppState {
        registry: Registry::new(limits, metrics.clone()),
        backend,
        identifier,
        metrics,
        config,
    };
    web::serve(state).await
}

/// Opens the placement store and brings the container pool up. Refuses to start rather than
/// run without the store: placements and UIDs must never be lost or reused.
async fn container_backend(config: &Config) -> anyhow::Result<DockerBackend> {
    let dir = config.data_dir().unwrap_or_default();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create DATA_DIR {}", dir.display()))?;
    let path = dir.join("placements.sqlite");
    let store = SqliteStore::open(&path)
        .with_context(|| format!("cannot open the placement store {}", path.display()))?;
    let pool = Pool::start(config.pool_config(), Box::new(store))
        .await
        .context("cannot start the container pool")?;
    DockerBackend::new(pool).context("cannot reach the container engine")
}
