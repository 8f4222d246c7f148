//! A Lua script run with EVALSHA: loaded (SCRIPT LOAD) on first use and
//! again whenever Redis answers NOSCRIPT (restarted, SCRIPT FLUSH, a
//! failover to a replica that never saw it). Only the SHA is sent per call.

use bytes::Bytes;

use crate::tier::redis::{arg, bulk, error_text, RedisLink};

/// One script and the SHA Redis gave it.
#[derive(Debug)]
pub struct Script {
    text: Bytes,
    sha: std::sync::RwLock<Option<Bytes>>,
}

impl Script {
    /// A script not loaded yet.
    pub fn new(text: &'static str) -> Script {
        Script {
            text: Bytes::from_static(text.as_bytes()),
            sha: std::sync::RwLock::new(None),
        }
    }

    /// The script's text (for a SCRIPT LOAD on a connection of the
    /// caller's own).
    pub fn text(&self) -> &Bytes {
        &self.text
    }

    /// The SHA Redis gave it, once loaded.
    pub fn sha(&self) -> Option<Bytes> {
        self.sha.read().ok().and_then(|s| s.clone())
    }

    /// Remembers the SHA a SCRIPT LOAD made elsewhere returned.
    pub fn remember(&self, sha: Bytes) {
        if let Ok(mut s) = self.sha.write() {
            *s = Some(sha);
        }
    }

    /// Forgets the SHA (a node answered NOSCRIPT): loaded again next.
    pub fn forget(&self) {
        if let Ok(mut s) = self.sha.write() {
            *s = None;
        }
    }

    /// Runs the script: `keys` then `args`. `route` picks the node in
    /// cluster mode. The reply frame is returned as Redis sent it (errors
    /// included); `Err` when Redis could not be reached.
    pub async fn run(
        &self,
        link: &RedisLink<'_>,
        route: &Bytes,
        keys: &[Bytes],
        args: &[Bytes],
    ) -> Result<Bytes, String> {
        for _ in 0..2 {
            let sha = match self.sha.read().ok().and_then(|s| s.clone()) {
                Some(sha) => sha,
                None => self.load(link, route).await?,
            };
            let mut command = Vec::with_capacity(3 + keys.len() + args.len());
            command.push(arg("EVALSHA"));
            command.push(sha);
            command.push(Bytes::from(keys.len().to_string()));
            command.extend_from_slice(keys);
            command.extend_from_slice(args);
            let reply = link.call_one(route, command).await?;
            match error_text(&reply) {
                Some(text) if text.starts_with("NOSCRIPT") => {
                    if let Ok(mut s) = self.sha.write() {
                        *s = None;
                    }
                }
                _ => return Ok(reply),
            }
        }
        Err("NOSCRIPT after SCRIPT LOAD".into())
    }

    async fn load(&self, link: &RedisLink<'_>, route: &Bytes) -> Result<Bytes, String> {
        let reply = link
            .call_one(route, vec![arg("SCRIPT"), arg("LOAD"), self.text.clone()])
            .await?;
        let sha = bulk(&reply)
            .ok_or_else(|| error_text(&reply).unwrap_or_else(|| "SCRIPT LOAD failed".into()))?;
        if let Ok(mut s) = self.sha.write() {
            *s = Some(sha.clone());
        }
        Ok(sha)
    }
}
