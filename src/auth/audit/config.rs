//! `[audit]`: where the audit log goes and what it may hold.

use serde::Deserialize;

/// Where audit lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutput {
    /// Standard output (a container's log collector picks it up).
    Stdout,
    /// Appended to this file, created if missing (mode 0600).
    File(std::path::PathBuf),
}

/// The `[audit]` section.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Off by default.
    pub enabled: bool,
    /// `"stdout"` or a file path.
    #[serde(deserialize_with = "output", serialize_with = "output_text")]
    pub output: AuditOutput,
    /// Also insert events into the `strata_audit` table (needs
    /// `[postgres]`).
    pub postgres: bool,
    /// Record the key a refused command named. Off by default: keys can
    /// be personal data.
    pub include_keys: bool,
    /// Events queued for the writer before new ones are dropped (and
    /// counted).
    pub buffer_events: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: false,
            output: AuditOutput::Stdout,
            postgres: false,
            include_keys: false,
            buffer_events: 10_000,
        }
    }
}

fn output<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AuditOutput, D::Error> {
    let text = String::deserialize(d)?;
    Ok(match text.as_str() {
        "stdout" | "-" => AuditOutput::Stdout,
        path => AuditOutput::File(path.into()),
    })
}

impl AuditConfig {
    /// Checks what serde cannot.
    pub fn validate(&self, has_postgres: bool) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.postgres && !has_postgres {
            return Err("audit.postgres = true needs a [postgres] section".into());
        }
        if self.buffer_events == 0 {
            return Err("audit.buffer_events must be at least 1".into());
        }
        if let AuditOutput::File(path) = &self.output {
            if path.as_os_str().is_empty() {
                return Err("audit.output: empty path".into());
            }
        }
        Ok(())
    }
}

/// `output` as the file writes it (for `PROXY CONFIG GET`).
fn output_text<S: serde::Serializer>(o: &AuditOutput, s: S) -> Result<S::Ok, S::Error> {
    match o {
        AuditOutput::Stdout => s.serialize_str("stdout"),
        AuditOutput::File(path) => s.serialize_str(&path.to_string_lossy()),
    }
}
