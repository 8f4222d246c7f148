//! Writing a cluster-mode batch: replies gathered from several nodes,
//! redirects followed, splits and fan-outs merged, in request order.

use super::{Stop, Writer};
use crate::backend::cluster::redirect::{classify, Redirect};
use crate::backend::cluster::split::merge_fanout;
use crate::backend::cluster::{scan, ClusterRouter, ClusterView, Resend};
use crate::backend::mux::MuxReply;
use crate::protocol::reply::{self, is_error};
use crate::protocol::Protocol;
use crate::server::routed::{GroupReplies, Item, RoutedBatch, Sub};
use bytes::Bytes;

/// What resolving a batch's items needs besides the replies.
struct Ctx<'a> {
    cluster: &'a ClusterRouter,
    view: &'a ClusterView,
    client_id: u64,
    proto: Protocol,
    user: Option<&'a crate::backend::users::Credentials>,
}

impl Writer {
    /// Writes one reply per item of `batch`, in order.
    pub(super) async fn write_routed(&mut self, mut batch: Box<RoutedBatch>) -> Result<(), Stop> {
        let Some(cluster) = self.shared.cluster.clone() else {
            return Ok(()); // never built outside cluster mode
        };
        let mut replies = Vec::with_capacity(batch.groups.len());
        for group in &mut batch.groups {
            let result = match group.reply.as_mut() {
                Some(rx) => match self.await_reply(rx).await? {
                    Ok(r) => r,
                    Err(_) => Err(crate::backend::BackendError::ConnectionLost {
                        addr: group.node.addr().to_string(),
                        reason: "connection closed before replying".into(),
                    }),
                },
                None => Err(crate::backend::BackendError::Unavailable {
                    addr: group.node.addr().to_string(),
                    reason: "request not sent".into(),
                }),
            };
            let sent = std::mem::take(&mut group.sent);
            replies.push(GroupReplies::new(group.node.clone(), sent, result));
        }
        let elapsed = batch.started.elapsed();
        crate::telemetry::record_batch(&batch.metrics, elapsed);
        if elapsed >= self.shared.slowlog.threshold() {
            for group in &replies {
                self.slow(batch.started, batch.sent_at, &group.sent, elapsed);
            }
        }
        let b = &mut *batch;
        let mut plans = b.plans.drain(..).peekable();
        let ctx = Ctx {
            cluster: &cluster,
            view: &b.view,
            client_id: b.client_id,
            proto: b.proto,
            user: b.user.as_deref(),
        };
        for (i, item) in b.items.drain(..).enumerate() {
            // The common case first: one node's reply, passed on as it is.
            if let Item::One(sub) = &item {
                if plans.peek().is_none_or(|(at, _)| *at != i) {
                    let plain = replies
                        .get_mut(sub.group)
                        .and_then(GroupReplies::next_plain);
                    if let Some(frame) = plain {
                        self.out.extend_from_slice(frame);
                        if self.out.len() >= super::FLUSH_BYTES {
                            self.flush().await?;
                        }
                        continue;
                    }
                }
            }
            let (frame, silent) = match item {
                Item::Silent(inner) => (self.resolve(&ctx, &mut replies, *inner).await?, true),
                other => (self.resolve(&ctx, &mut replies, other).await?, false),
            };
            let frame = match plans.next_if(|(at, _)| *at == i) {
                Some((_, plan)) => self.shared.transforms.load().apply_reply(&plan, frame),
                None => frame,
            };
            if !silent {
                self.out.extend_from_slice(&frame);
            }
            if self.out.len() >= super::FLUSH_BYTES {
                self.flush().await?;
            }
        }
        drop(plans);
        self.batch_pool.give(batch);
        Ok(())
    }

    async fn resolve(
        &mut self,
        ctx: &Ctx<'_>,
        replies: &mut [GroupReplies],
        item: Item,
    ) -> Result<Bytes, Stop> {
        Ok(match item {
            Item::Ready(bytes) => bytes,
            Item::One(sub) => self.final_reply(ctx, replies, &sub).await?,
            Item::Split(split, subs) => {
                let mut parts = Vec::with_capacity(subs.len());
                for sub in &subs {
                    parts.push(self.final_reply(ctx, replies, sub).await?);
                }
                split.merge(&parts)
            }
            Item::Fanout(merge, subs) => {
                let mut parts = Vec::with_capacity(subs.len());
                for sub in &subs {
                    parts.push(self.final_reply(ctx, replies, sub).await?);
                }
                merge_fanout(merge, &parts)
            }
            Item::Scan(pos, sub) => {
                let frame = self.final_reply(ctx, replies, &sub).await?;
                if is_error(&frame) {
                    frame
                } else {
                    scan::client_reply(&ctx.view.map, pos, &frame).unwrap_or_else(|e| e.to_reply())
                }
            }
            Item::Info { subs, proto, proxy } => {
                let mut parts = Vec::with_capacity(subs.len());
                for sub in &subs {
                    let frame = self.final_reply(ctx, replies, sub).await?;
                    let addr = replies
                        .get(sub.group)
                        .map(|g| g.node.addr().to_string())
                        .unwrap_or_default();
                    parts.push((addr, frame));
                }
                let views: Vec<(&str, &[u8])> =
                    parts.iter().map(|(a, f)| (a.as_str(), &f[..])).collect();
                match crate::backend::cluster::info::merge(&views) {
                    Ok(mut text) => {
                        if proxy {
                            if !text.is_empty() {
                                text.push_str("\r\n");
                            }
                            text.push_str(&self.shared.proxy_info());
                        }
                        let mut r = crate::protocol::ReplyBuf::new(proto);
                        r.verbatim(text.as_bytes());
                        r.freeze()
                    }
                    Err(error) => Bytes::from(error),
                }
            }
            Item::Silent(inner) => Box::pin(self.resolve(ctx, replies, *inner)).await?,
        })
    }

    /// A request's final reply: as the node sent it, or after following
    /// its redirect or retry (flushing what is written so far first, so a
    /// retry never delays the replies before it).
    async fn final_reply(
        &mut self,
        ctx: &Ctx<'_>,
        replies: &mut [GroupReplies],
        sub: &Sub,
    ) -> Result<Bytes, Stop> {
        let Some(group) = replies.get_mut(sub.group) else {
            return Ok(reply::error("ERR strata: reply group missing"));
        };
        let first: MuxReply = group.next_reply();
        if let Ok(frame) = &first {
            if classify(frame) == Redirect::Other {
                return Ok(frame.clone());
            }
        }
        let addr = group.node.addr().to_string();
        let request = group.request(sub);
        self.flush().await?;
        let resend = Resend {
            client_id: ctx.client_id,
            proto: ctx.proto,
            request: &request,
            slot: sub.slot,
            read_only: sub.read_only,
            user: ctx.user,
        };
        Ok(ctx.cluster.follow(resend, addr, first).await)
    }
}
