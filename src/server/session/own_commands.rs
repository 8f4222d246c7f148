//! COMMAND, COMMAND INFO/DOCS/COUNT/LIST with strata's own commands
//! (`command/own/`): the request goes to the backend as sent, and a task
//! of its own merges strata's entries into the reply, which keeps its
//! place in the client's order. The command table routes these forms
//! `Local` so that they never take the plain-command fast path: the hot
//! path pays nothing for this.

use super::*;

impl Session {
    /// Answers a COMMAND form with the backend's reply and strata's own
    /// commands merged in.
    pub(super) async fn command_with_own(&mut self, req: Request) -> Flow {
        let started = Instant::now();
        if !self.reply_wanted() {
            return Flow::Continue;
        }
        // After what the client sent before it, as any command.
        if !self.flush_batch().await || !self.await_barrier().await {
            return Flow::Close;
        }
        let node = match &self.cluster {
            Some(cluster) => match cluster.view().any_primary(self.info.id) {
                Some(node) => node.clone(),
                None => return self.error("CLUSTERDOWN Hash slot not served").await,
            },
            None => self.shared.backend.node_for(false, self.info.id).await,
        };
        let backend = node
            .send(
                self.info.id,
                self.proto,
                req.frame.clone(),
                1,
                self.auth.backend_user(),
            )
            .await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let args = req.args().to_vec();
        let proto = self.proto;
        // Dropped by the task once the reply is made.
        let slow = crate::admin::slow_watch::SlowWatch::start(
            &self.shared,
            &self.info,
            &req.frame,
            started,
        )
        .sent();
        tokio::spawn(async move {
            let _slow = slow;
            // A dropped slot reads as a lost connection to the writer.
            if let Ok(reply) = backend.await {
                let _ = tx.send(reply.map(|r| crate::command::own::merge::merge(&args, r, proto)));
            }
        });
        let timing = Timing {
            started: Instant::now(),
            metrics: None,
        };
        if self
            .queue(Pending::Backend {
                reply: rx,
                post: Post::None,
                timing,
            })
            .await
        {
            Flow::Continue
        } else {
            Flow::Close
        }
    }
}
