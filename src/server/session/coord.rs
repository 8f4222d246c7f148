//! The coordination step's hook in the session (`coord/`): strata's own
//! coordination commands, and COMMAND's replies completed with them. The
//! state lives in `coord::Coord` (shared) and `coord::ClientCoord` (this
//! connection's leases, the session's one field for it).
//!
//! The step runs inline, like a blocking command: the client's later
//! commands wait for it (LOCK.ACQUIRE … WAIT blocks only its own client),
//! other clients are not held up. While it waits the client's socket is
//! still read, so a client that hangs up stops waiting at once (it would
//! otherwise take a lock for nobody).

use super::super::clients::Departure;
use super::*;
use crate::coord::{ClientCoord, Coord, Plan};
use crate::tier::RedisLink;

impl Session {
    /// Runs a coordination plan. `Ok(())`: route the command as usual
    /// (COMMAND inside MULTI); `Err(flow)`: it was answered here.
    pub(super) async fn coord_step(
        &mut self,
        coord: &Arc<Coord>,
        plan: Plan,
        req: &Request,
        timing: &Timing,
    ) -> Result<(), Flow> {
        if (self.dedicated.is_some() && self.state.in_multi) || self.unbound_multi.is_some() {
            return match plan {
                // Queued and answered by Redis, as always.
                Plan::Command(_) => Ok(()),
                // Cannot run inside a transaction (Redis's `no-multi` text);
                // EXEC then aborts, as after any queueing error.
                Plan::Run(_) => {
                    self.multi_refused = true;
                    Err(self
                        .error("ERR Command not allowed inside a transaction")
                        .await)
                }
            };
        }
        // A subscribed RESP2 client may only (un)subscribe, PING, QUIT
        // and RESET, as Redis says (COMMAND's forms too).
        if self.proto == crate::protocol::Protocol::Resp2
            && self.dedicated.is_some()
            && self.state.subscribed()
        {
            let name = match plan {
                Plan::Run(spec) => spec.name.to_string(),
                Plan::Command(_) => "command".to_string(),
            };
            return Err(self
                .error(&format!(
                    "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
                ))
                .await);
        }
        // What the client sent before runs first.
        if self.end_script_run().await == Flow::Close
            || !self.flush_batch().await
            || !self.await_barrier().await
        {
            return Err(Flow::Close);
        }
        let proto = self.proto;
        // In the slow log like every command strata answers (dropped once
        // the reply is made). COMMAND's forms go to the backend.
        let slow = crate::admin::slow_watch::SlowWatch::start(
            &self.shared,
            &self.info,
            &req.frame,
            timing.started,
        );
        let slow = match plan {
            Plan::Command(_) => slow.sent(),
            Plan::Run(_) => slow,
        };
        let reply = match plan {
            Plan::Command(kind) => {
                let link = RedisLink {
                    router: &self.shared.backend,
                    cluster: self.cluster.as_deref(),
                    client_id: self.info.id,
                    proto,
                    user: self.auth.backend_user(),
                };
                crate::coord::command_info::reply(kind, req.args(), &link, proto).await
            }
            Plan::Run(spec) => {
                let mut client = self.coord.take().unwrap_or_else(|| {
                    Box::new(ClientCoord::new(coord.clone(), self.info.clone()))
                });
                let mut departure = self.info.departure();
                // Only a command that may wait gives up when its client
                // leaves; a RELEASE of a client that hung up still runs,
                // as Redis runs what it read before the hang-up.
                let blocking = spec.flags.contains(&"blocking");
                let run = async {
                    tokio::select! {
                        biased;
                        reply = coord.run(spec, req.args(), &mut client, proto) => Some(reply),
                        _ = departure.wait_for(|d| *d != Departure::Present), if blocking => None,
                    }
                };
                let out = self
                    .input
                    .read_until(run, &self.info, &self.shared.metrics)
                    .await;
                self.coord = Some(client);
                match out {
                    Some(reply) => reply,
                    None => return Err(Flow::Close),
                }
            }
        };
        drop(slow);
        let flow = self.reply(reply).await;
        timing.record();
        Err(flow)
    }
}
