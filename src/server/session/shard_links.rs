//! Cluster mode, on a dedicated connection: SSUBSCRIBE and SUNSUBSCRIBE go
//! to the connection that holds (or will hold) their shard channels — the
//! main one for its pinned slot, else a link to the channel's primary
//! (`server/shard_links.rs`).

use super::*;
use crate::backend::cluster::split::{self, Plan};
use crate::backend::node::Node;
use crate::server::shard_links::with_count;

/// Where a shard pub/sub command goes, besides the main connection.
enum OnLink {
    /// An open link.
    Open(usize),
    /// A node to open a link to.
    New(Arc<Node>),
}

impl Session {
    /// Sends a shard pub/sub command on a link, or answers it, when the
    /// main connection is not where it belongs. `Err(timing)`: not such a
    /// command, go on with the main connection.
    pub(super) async fn shard_link_command(
        &mut self,
        req: &Request,
        spec: &'static CommandSpec,
        timing: Timing,
    ) -> Result<Flow, Timing> {
        if self.cluster.is_none() || self.state.in_multi {
            return Err(timing);
        }
        let shard = matches!(spec.name, "ssubscribe" | "sunsubscribe");
        if !spec.arity_ok(req.args().len()) {
            return self.back_to_main(timing).await;
        }
        if !shard {
            if let Some(pong) = self.subscribed_pong(req, spec) {
                return Ok(self.reply(pong).await);
            }
            return match self.plain_link(spec) {
                Some(target) => Ok(self.send_on_link(req, spec, timing, target).await),
                None => self.back_to_main(timing).await,
            };
        }
        if req.args().len() == 1 {
            // SUNSUBSCRIBE from everything, wherever it is.
            if self.shard_links.channels.is_empty() {
                return self.back_to_main(timing).await;
            }
            return Ok(self.sunsubscribe_everywhere(timing).await);
        }
        let Ok(Plan::Slot(slot)) = split::plan(spec, req.args()) else {
            return self.back_to_main(timing).await; // CROSSSLOT, from check_pinned
        };
        let target = if spec.name == "ssubscribe" {
            let view = match self.cluster.as_ref() {
                Some(cluster) => cluster.view(),
                None => return Err(timing),
            };
            let Some(node) = view.primary(slot) else {
                return self.back_to_main(timing).await;
            };
            let on_main = match self.pinned_slot {
                Some(pinned) => pinned == slot,
                None => node.addr() == self.shard_links.main_addr,
            };
            if on_main {
                None
            } else {
                Some(match self.shard_links.find(node.addr()) {
                    Some(i) => OnLink::Open(i),
                    None => OnLink::New(node.clone()),
                })
            }
        } else {
            let on_link = req.args()[1..]
                .iter()
                .find_map(|ch| self.shard_links.channels.get(ch).copied());
            match on_link {
                Some(i) => Some(OnLink::Open(i)),
                // None of them subscribed, in a slot the main connection
                // does not hold: answered as Redis does, counts unchanged
                // (sent to the main connection, it would pin its slot).
                None if self.pinned_slot != Some(slot) => {
                    return Ok(self.sunsubscribe_none(req).await);
                }
                None => None,
            }
        };
        match target {
            None => self.back_to_main(timing).await,
            Some(target) => Ok(self.send_on_link(req, spec, timing, target).await),
        }
    }

    /// SUBSCRIBE and friends live on strata's pub/sub node, where PUBLISH
    /// goes. When the main connection is elsewhere (it was taken for a
    /// shard channel) and holds none of them, they go on a link there.
    fn plain_link(&self, spec: &CommandSpec) -> Option<OnLink> {
        if !matches!(
            spec.name,
            "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe"
        ) {
            return None;
        }
        if let Some(i) = self.shard_links.plain {
            return Some(OnLink::Open(i));
        }
        let main_holds = !(self.state.channels.is_empty() && self.state.patterns.is_empty());
        if main_holds || !matches!(spec.name, "subscribe" | "psubscribe") {
            return None;
        }
        let view = self.cluster.as_ref()?.view();
        let node = view.pubsub_node()?;
        if node.addr() == self.shard_links.main_addr {
            return None;
        }
        Some(match self.shard_links.find(node.addr()) {
            Some(i) => OnLink::Open(i),
            None => OnLink::New(node.clone()),
        })
    }

    /// PING from a subscribed RESP2 client while links hold subscriptions:
    /// the main connection may hold none (and would answer `+PONG`), so
    /// strata gives Redis's subscribed-mode reply itself.
    fn subscribed_pong(&self, req: &Request, spec: &CommandSpec) -> Option<Bytes> {
        if spec.name != "ping"
            || self.proto != Protocol::Resp2
            || self.shard_links.links.is_empty()
            || !self.state.subscribed()
        {
            return None;
        }
        let arg = req.args().get(1).cloned().unwrap_or_default();
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.array(2).bulk(b"pong").bulk(&arg);
        Some(r.freeze())
    }

    /// The next command goes on the main connection: after a link, once
    /// what the link owes is answered.
    async fn back_to_main(&mut self, timing: Timing) -> Result<Flow, Timing> {
        if self.shard_links.last.take().is_some() && !self.set_barrier().await {
            return Ok(Flow::Close);
        }
        Err(timing)
    }

    /// Sends `req` on a link (opened if need be), after every reply due
    /// on the other connections.
    async fn send_on_link(
        &mut self,
        req: &Request,
        spec: &'static CommandSpec,
        timing: Timing,
        target: OnLink,
    ) -> Flow {
        if !self.flush_dedicated().await {
            return Flow::Close;
        }
        let index = match target {
            OnLink::Open(i) => i,
            OnLink::New(node) => match node.dedicated(self.proto, self.auth.backend_user()).await {
                Ok(mut conn) => match conn.stream.take() {
                    Some(stream) => {
                        let buf = std::mem::take(&mut conn.buf);
                        let (rd, wr) = stream.into_split();
                        self.shard_links
                            .add(node.addr().to_string(), rd, buf, wr, conn)
                    }
                    None => return self.error("ERR backend connection broken").await,
                },
                Err(e) => {
                    self.shared.metrics.error(e.kind());
                    return self.reply(e.to_reply()).await;
                }
            },
        };
        if self.shard_links.last != Some(index)
            && (!self.set_barrier().await || !self.await_barrier().await)
        {
            return Flow::Close;
        }
        self.shard_links.last = Some(index);
        let frames = self.state.apply(Some(spec), req.args());
        if spec.name == "sunsubscribe" {
            self.info.expect_shard_unsubscribes(frames);
        }
        self.info.set_pubsub(
            self.state.channels.len(),
            self.state.patterns.len(),
            self.state.shard_channels.len(),
            false,
        );
        let expect = Expect {
            frames,
            timeout: Some(self.shared.backend.request_timeout()),
            deadline: None,
            // Sent on a link, not the dedicated connection: it takes the
            // place of the last command sent there.
            seq: self.dedicated.as_ref().map_or(0, |d| d.sent),
            monitor: false,
            post: Post::None,
            slow: crate::admin::slow_watch::SlowWatch::start(
                &self.shared,
                &self.info,
                &req.frame,
                timing.started,
            )
            .sent(),
            timing,
            redirect: None,
        };
        if !self.queue(Pending::Expect(expect)).await {
            return Flow::Close;
        }
        match spec.name {
            "ssubscribe" => {
                for ch in &req.args()[1..] {
                    self.shard_links.channels.insert(ch.clone(), index);
                }
            }
            "sunsubscribe" => {
                for ch in &req.args()[1..] {
                    self.shard_links.channels.remove(ch);
                }
            }
            _ => self.shard_links.plain = Some(index),
        }
        if let Some(link) = self.shard_links.links.get_mut(index) {
            // A failed write leaves the reply due: the writer reports the
            // link's loss (or its deadline) to the client.
            let _ = crate::tls::write_flush(&mut link.wr, &req.frame).await;
        }
        if self.state.is_clean() {
            return self.leave_dedicated().await;
        }
        Flow::Continue
    }

    /// SUNSUBSCRIBE without arguments while channels live on links: one
    /// SUNSUBSCRIBE per slot, each where its channels are (Redis refuses
    /// channels of several slots in one command). The client gets one
    /// confirmation per channel, as from one Redis.
    async fn sunsubscribe_everywhere(&mut self, timing: Timing) -> Flow {
        let mut by_slot: std::collections::BTreeMap<u16, Vec<Bytes>> = Default::default();
        for ch in &self.state.shard_channels {
            by_slot
                .entry(crate::command::slot::hash_slot(ch))
                .or_default()
                .push(ch.clone());
        }
        let spec = command::lookup(&[Bytes::from_static(b"SUNSUBSCRIBE")]);
        let mut timing = Some(timing);
        for (_, channels) in by_slot {
            let mut args = vec![Bytes::from_static(b"SUNSUBSCRIBE")];
            args.extend(channels);
            let req = Request::from_args(args);
            let t = timing.take().unwrap_or(Timing {
                started: Instant::now(),
                metrics: None,
            });
            if Box::pin(self.handle_dedicated(req, spec, t, None)).await == Flow::Close {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    /// SUNSUBSCRIBE of channels the client is not subscribed to, in a slot
    /// no connection of its serves: Redis's confirmations, the count
    /// unchanged.
    async fn sunsubscribe_none(&mut self, req: &Request) -> Flow {
        let kind: &[u8] = if self.proto == Protocol::Resp3 {
            b">"
        } else {
            b"*"
        };
        let count = self.state.shard_channels.len() as i64;
        let mut out = BytesMut::new();
        for ch in &req.args()[1..] {
            out.extend_from_slice(&with_count(kind, b"sunsubscribe", ch, count));
        }
        self.reply(out.freeze()).await
    }
}
