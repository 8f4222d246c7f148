//! The log filter, replaceable at run time (`telemetry.log_level` on a
//! config reload). The binary installs the subscriber and registers how
//! to replace its filter; the library (and tests, which install none)
//! only asks.

use std::sync::OnceLock;

type Reload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Registers how to replace the log filter (once, by `main`).
pub fn set_log_reloader(f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = RELOAD.set(Box::new(f));
}

/// Replaces the log filter with `level` (an `EnvFilter` directive such
/// as `info` or `strata=debug`). Without a registered subscriber (tests),
/// it only checks the directive.
pub fn reload_log_level(level: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| format!("telemetry.log_level '{level}': {e}"))?;
    match RELOAD.get() {
        Some(f) => f(level),
        None => Ok(()),
    }
}
