//! The `strata` binary: CLI, config, logging, signals, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strata::config::Config;

/// mimalloc rather than glibc's malloc: per request strata allocates and
/// frees small buffers and reply slots, and glibc's cost per pair was about
/// an eighth of strata's instructions at `-P 1` (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// strata: a sidecar proxy that speaks the Redis protocol.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    /// Configuration file (TOML). Without it, defaults apply.
    #[arg(short, long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Validate this configuration file and exit (0 = valid).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Client listener, overriding server.listen (e.g. 127.0.0.1:6379).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Backend host:port, overriding backend.address.
    #[arg(long)]
    backend: Option<String>,
    /// Metrics/health listener, overriding telemetry.listen ("" disables).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Log filter, overriding telemetry.log_level (e.g. info, strata=debug).
    #[arg(long)]
    log_level: Option<String>,
    /// maxclients, overriding server.maxclients.
    #[arg(long)]
    maxclients: Option<usize>,
    /// Runtime worker threads, overriding server.worker_threads (0 = one per core).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Turns the deny list off (`auth.deny.enabled = false`): FLUSHALL,
    /// CONFIG SET, DEBUG … pass to the backend as they would to Redis.
    #[arg(long)]
    no_deny_list: bool,
    /// What to do (default: serve).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the Postgres tier schema (migrations/) to the `[postgres]`
    /// database of --config, then exit. strata also applies it at startup.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.check_config {
        return match Config::load(path) {
            Ok(config) => {
                // Also read the transform keys: a key strata could not load
                // would stop it at startup.
                let keys = strata::transform::Keyring::load(&config.transform_keys);
                if let Err(e) = keys {
                    eprintln!("invalid config {}: {e}", path.display());
                    return ExitCode::from(2);
                }
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Migrate) = cli.command {
        return migrate(cli.config.as_deref());
    }
    let mut config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    // The command line wins over the file, at startup and on each reload.
    let origin = strata::app::reload::Origin {
        path: cli.config.clone(),
        pinned: strata::app::reload::Pinned {
            listen: cli.listen,
            backend: cli.backend.clone(),
            metrics_listen: cli.metrics_listen.clone(),
            log_level: cli.log_level.clone(),
            worker_threads: cli.worker_threads,
            maxclients: cli.maxclients,
            no_deny_list: cli.no_deny_list,
        },
    };
    origin.pinned.apply(&mut config);
    if let Err(e) = config.validate() {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    init_logging(&config.telemetry.log_level, config.telemetry.log_json);

    // One worker (the default): a current-thread runtime, which runs every
    // task on this thread without the work-stealing scheduler's cross-thread
    // bookkeeping. More than one: the multi-thread scheduler.
    let mut builder = if config.server.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if config.server.worker_threads > 0 {
            b.worker_threads(config.server.worker_threads);
        }
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match strata::app::start_from(config, origin).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        reload_on_sighup(running.reloader.clone());
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        running.shutdown().await;
        tracing::info!("bye");
        ExitCode::SUCCESS
    })
}

/// `strata migrate`: exit 0 once the schema is applied, 2 for a config
/// without `[postgres]`, 1 when Postgres refused or could not be reached.
fn migrate(path: Option<&std::path::Path>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("strata migrate needs --config with a [postgres] section");
        return ExitCode::from(2);
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(pg) = config.postgres else {
        eprintln!("{}: no [postgres] section", path.display());
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(strata::tier::migrate(&pg)) {
        Ok(()) => {
            println!("postgres schema is up to date");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strata migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A config reload replaces the filter (`telemetry.log_level`).
    macro_rules! install {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            strata::telemetry::set_log_reloader(move |level| {
                let filter =
                    tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
                handle.reload(filter).map_err(|e| e.to_string())
            });
            builder.init();
        }};
    }
    if json {
        install!(builder.json());
    } else {
        install!(builder);
    }
}

/// SIGHUP re-reads the config file (TLS files have their own SIGHUP
/// handler, `tls/reload.rs`).
fn reload_on_sighup(reloader: std::sync::Arc<strata::app::reload::Reloader>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // The outcome is logged and counted by the reloader.
            let _ = reloader.reload_file("sighup").await;
        }
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
