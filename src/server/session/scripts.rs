//! Scripts and functions run on a connection of the client's own.
//!
//! EVAL, EVALSHA, FCALL and their `_RO` forms (the table's
//! [`Flags::RUNS_SCRIPT`]) can keep Redis busy for as long as the script
//! runs. On a shared, multiplexed connection that would hold every other
//! client's commands behind it: SCRIPT KILL could not reach Redis, and
//! clients that Redis would answer `-BUSY …` would wait instead, until
//! strata's request timeout failed the whole connection. So a run of
//! consecutive script calls borrows a dedicated connection from the node's
//! pool and is pipelined on it, with no strata deadline (a direct client
//! would wait for a long script too). Redis then answers everyone else on
//! the shared connections as it would directly: `-BUSY` while the script
//! runs, and SCRIPT KILL, FUNCTION KILL and SHUTDOWN NOSAVE at once.
//!
//! The run ends at the first command of another kind (or, in cluster mode,
//! a script for another node), when the client has sent nothing for
//! [`RUN_IDLE`], or when it leaves: the connection goes back to the pool
//! once its replies are written, without RESET for a RESP2 client, as a
//! script leaves no state on the connection. So the pool holds one
//! connection per client that is running scripts, not per client that
//! once ran one; and while the pool has none to spare, script calls go on
//! the shared connection as they did before. The session's barrier keeps
//! the client's order across each switch, as for any move between the
//! shared and a dedicated connection.

use super::*;
use crate::backend::cluster::slot_unserved;
use crate::backend::cluster::split::{self, Plan};
use crate::backend::node::Node;
use crate::server::pending::Redirectable;

/// How long a client may send nothing before its run of script calls ends
/// and the connection goes back to the pool. Short enough that idle
/// clients do not hold the pool; long enough that a client calling scripts
/// one after the other (each after the last one's reply) keeps its
/// connection instead of borrowing it anew for every call.
const RUN_IDLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Resolves after [`RUN_IDLE`] while a run `held` its connection; never
/// otherwise (one branch of the reader's wait for input).
pub(super) async fn idle(held: bool) {
    if held {
        tokio::time::sleep(RUN_IDLE).await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// The node whose connection a run of script calls holds.
pub(super) struct ScriptRun {
    node: Arc<Node>,
}

impl Session {
    /// A script call from multiplexed mode (or after a run for another
    /// node ended): borrows a connection to the node it runs on.
    pub(super) async fn script_command(
        &mut self,
        node: Arc<Node>,
        req: Request,
        spec: &'static CommandSpec,
        timing: Timing,
        plan: Option<ReplyPlan>,
    ) -> Flow {
        if let Err(e) = self.enter_dedicated(Some(node.clone())).await {
            self.shared.metrics.error(e.kind());
            return self.reply(e.to_reply()).await;
        }
        if let Some(d) = self.dedicated.as_mut() {
            d.script_run = Some(ScriptRun { node });
        }
        self.script_on_run(req, spec, timing, plan).await
    }

    /// Sends a script call on the run's connection. The lean part of
    /// `handle_dedicated`: a script changes no state of the connection
    /// and has one reply, which may take as long as the script runs.
    pub(super) async fn script_on_run(
        &mut self,
        req: Request,
        spec: &'static CommandSpec,
        timing: Timing,
        plan: Option<ReplyPlan>,
    ) -> Flow {
        let redirect = self.cluster.is_some().then(|| {
            Box::new(Redirectable {
                request: req.frame.clone(),
                slot: match split::plan(spec, &req) {
                    Ok(Plan::Slot(slot)) => Some(slot),
                    _ => None,
                },
                read_only: spec.has(Flags::READ) && !spec.has(Flags::WRITE),
            })
        });
        let expect = Expect {
            frames: 1,
            timeout: None,
            deadline: None,
            seq: self.dedicated.as_mut().map_or(0, |d| d.next_seq(true)),
            monitor: false,
            post: plan.map_or(Post::None, |plan| Post::Transform(Box::new(plan))),
            slow: crate::admin::slow_watch::SlowWatch::start(
                &self.shared,
                &self.info,
                &req.frame,
                timing.started,
            )
            .sent(),
            timing,
            redirect,
        };
        // The entry goes first, so the writer expects the reply before it can arrive.
        if !self.queue(Pending::Expect(expect)).await {
            return Flow::Close;
        }
        if let Some(d) = self.dedicated.as_mut() {
            d.out.extend_from_slice(&req.frame);
        }
        Flow::Continue
    }

    /// While a run of script calls holds a connection: true when this
    /// command continues it (a script for the same node); false when the
    /// run must end first. `Err`: the script's reply, made here (CROSSSLOT,
    /// an unserved slot).
    pub(super) async fn script_run_continues(
        &self,
        spec: Option<&'static CommandSpec>,
        req: &Request,
    ) -> Result<bool, Bytes> {
        let Some(spec) = spec.filter(|s| s.has(Flags::RUNS_SCRIPT)) else {
            return Ok(false);
        };
        if self.reply_mode != ReplyMode::On {
            return Ok(false);
        }
        let node = self.script_node(spec, req).await?;
        Ok(self
            .dedicated
            .as_ref()
            .and_then(|d| d.script_run.as_ref())
            .is_some_and(|run| Arc::ptr_eq(&run.node, &node)))
    }

    /// True while the client's dedicated connection is held for a run of
    /// script calls.
    pub(super) fn in_script_run(&self) -> bool {
        self.dedicated
            .as_ref()
            .is_some_and(|d| d.script_run.is_some())
    }

    /// Gives the run's connection back (after its replies), if one is held.
    pub(super) async fn end_script_run(&mut self) -> Flow {
        if !self.in_script_run() {
            return Flow::Continue;
        }
        self.leave_dedicated().await
    }

    /// Where a script call runs: its keys' node in cluster mode (a
    /// replica for a read-only script when `read_from` allows), else the
    /// primary, or a replica for a read-only script. `Err`: the reply the
    /// routed path would give (CROSSSLOT, an unserved slot).
    pub(super) async fn script_node(
        &self,
        spec: &'static CommandSpec,
        req: &Request,
    ) -> Result<Arc<Node>, Bytes> {
        let read_only = spec.has(Flags::READ) && !spec.has(Flags::WRITE);
        let Some(cluster) = self.cluster.as_ref() else {
            return Ok(self.shared.backend.node_for(read_only, self.info.id).await);
        };
        let view = cluster.view();
        match split::plan(spec, req) {
            Err(cross) => Err(cross.to_reply()),
            Ok(Plan::Slot(slot)) => cluster
                .node_for(&view, slot, read_only, self.info.id)
                .cloned()
                .ok_or_else(|| slot_unserved(slot)),
            Ok(_) => view
                .any_primary(self.info.id)
                .cloned()
                .ok_or_else(|| reply::error("CLUSTERDOWN no primary serves any slot")),
        }
    }
}
