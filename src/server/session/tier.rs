//! The tier step's hook in the session (`tier/`): a command on a mirrored
//! key is re-warmed before it is routed (reads), or run by the tier and
//! answered here (writes). The tier's state lives in `tier::Tiers`; the
//! session only sends it the client's connection details.
//!
//! The step runs inline: the client's later commands wait for it, so its
//! own commands keep their order across the tiers (a GET after a SET sees
//! the SET). Other clients are not held up.

use super::*;
use crate::tier::{Plan, RedisLink, Tiers};

impl Session {
    /// Runs the tier's plan for a command. `Ok(())`: route the command as
    /// usual (after a re-warm); `Err(flow)`: it was answered here.
    pub(super) async fn tier_step(
        &mut self,
        tiers: &Tiers,
        plan: Plan,
        timing: &Timing,
        reply_plan: &mut Option<ReplyPlan>,
    ) -> Result<(), Flow> {
        let write = match plan {
            Plan::Proceed => return Ok(()),
            Plan::Answer(refusal) => {
                if (self.dedicated.is_some() && self.state.in_multi) || self.unbound_multi.is_some()
                {
                    // Redis discards a transaction after a queueing error.
                    self.multi_refused = true;
                }
                return Err(self.reply(refusal).await);
            }
            Plan::Warm(keys) => {
                // What the client sent before runs first (the key may be
                // deleted or flushed by it); a script run ends here, as
                // at any other command.
                if self.end_script_run().await == Flow::Close
                    || !self.flush_batch().await
                    || !self.await_barrier().await
                {
                    return Err(Flow::Close);
                }
                let warmed = {
                    let link = self.redis_link();
                    tiers.warm(&link, &keys).await
                };
                return match warmed {
                    Ok(()) => Ok(()),
                    Err(text) => Err(self.error(&text).await),
                };
            }
            Plan::Write(write) => write,
        };
        if self.end_script_run().await == Flow::Close {
            return Err(Flow::Close);
        }
        if !self.flush_batch().await || !self.await_barrier().await {
            return Err(Flow::Close);
        }
        let reply = {
            let link = self.redis_link();
            tiers.write(&link, write).await
        };
        let flow = match reply_plan.take() {
            None => self.reply(reply).await,
            // SET … GET and GETDEL return a stored value: opened as a
            // backend reply would be.
            Some(plan) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(Ok(reply));
                self.queue_reply(Pending::Backend {
                    reply: rx,
                    post: Post::Transform(Box::new(plan)),
                    timing: Timing {
                        started: timing.started,
                        metrics: None,
                    },
                })
                .await
            }
        };
        timing.record();
        Err(flow)
    }

    /// The tier's way to Redis: this client's connections.
    fn redis_link(&self) -> RedisLink<'_> {
        RedisLink {
            router: &self.shared.backend,
            cluster: self.cluster.as_deref(),
            client_id: self.info.id,
            proto: self.proto,
            user: self.auth.backend_user(),
        }
    }

    /// Queues a reply entry, honouring CLIENT REPLY OFF/SKIP.
    async fn queue_reply(&mut self, entry: Pending) -> Flow {
        if !self.reply_wanted() {
            return Flow::Continue;
        }
        if self.queue(entry).await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }
}
