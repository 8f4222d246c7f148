//! The session's dedicated mode: entering it, forwarding commands while the
//! client holds server-side state, and leaving it.

use super::*;
use crate::server::tracking;

impl Session {
    /// A command that needs a dedicated connection, from multiplexed mode.
    pub(super) async fn dedicated_command(
        &mut self,
        req: Request,
        spec: &'static CommandSpec,
        timing: Timing,
        plan: Option<ReplyPlan>,
    ) -> Flow {
        if !spec.arity_ok(req.args().len()) {
            return self.error(&local::wrong_arity(spec.name)).await;
        }
        // Trivial cases that hold no state need no connection.
        match spec.name {
            "exec" => return self.error("ERR EXEC without MULTI").await,
            "discard" => return self.error("ERR DISCARD without MULTI").await,
            "unwatch" => return self.reply(reply::ok()).await,
            "xread" | "xreadgroup" if !has_block_option(req.args()) => {
                return self
                    .forward(req, Some(spec), Post::None, timing, true)
                    .await;
            }
            _ => {}
        }
        let mut target = None;
        if self.cluster.is_some() {
            match self.dedicated_target(spec, req.args()) {
                Ok((node, slot)) => {
                    target = Some(node);
                    self.pinned_slot = slot;
                }
                Err(reply) => return self.reply(reply).await,
            }
        }
        if let Err(e) = self.enter_dedicated(target).await {
            self.pinned_slot = None;
            self.shared.metrics.error(e.kind());
            return self.reply(e.to_reply()).await;
        }
        self.handle_dedicated(req, Some(spec), timing, plan).await
    }

    /// Borrows a dedicated connection (to `target`, else the primary) and
    /// tells the writer to read from it.
    pub(super) async fn enter_dedicated(
        &mut self,
        target: Option<Arc<crate::backend::node::Node>>,
    ) -> Result<(), crate::backend::BackendError> {
        let (mut conn, node) = match target {
            Some(node) => (
                node.dedicated(self.proto, self.auth.backend_user()).await?,
                node,
            ),
            None => {
                self.shared
                    .backend
                    .dedicated(self.proto, self.auth.backend_user())
                    .await?
            }
        };
        let (retired, addr) = (node.retired(), node.addr().to_string());
        let Some(stream) = conn.stream.take() else {
            return Err(crate::backend::BackendError::Unavailable {
                addr,
                reason: "connection broken".into(),
            });
        };
        // For CLIENT UNBLOCK from another client; cleared by the writer
        // before the connection goes back to the pool.
        if let Some(backend_id) = conn.backend_id {
            self.info.set_dedicated_on(Some((node, backend_id)));
        }
        let buf = std::mem::take(&mut conn.buf);
        let unbounded_at = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (rd, wr) = stream.into_split();
        // A swap the writer made for an earlier dedicated connection (it
        // raced the client leaving) must not redirect this one.
        while self.swaps.try_recv().is_ok() {}
        let links = self
            .cluster
            .is_some()
            .then(|| self.shard_links.begin(addr.clone()));
        // Commands already sent on the multiplexed connection run first.
        if !self.set_barrier().await {
            return Ok(()); // the writer is gone; the next queue() ends the session
        }
        if !self
            .queue(Pending::EnterDedicated(DedicatedReader {
                rd,
                buf,
                addr,
                retired,
                proto: self.proto,
                client_id: self.info.id,
                links,
                unbounded_at: unbounded_at.clone(),
                user: self.auth.backend_user_arc().cloned(),
            }))
            .await
        {
            return Ok(()); // the writer is gone; the next queue() ends the session
        }
        self.dedicated = Some(DedicatedWriter {
            wr,
            conn,
            out: BytesMut::new(),
            sent: 0,
            unbounded_at,
            script_run: None,
        });
        Ok(())
    }

    /// A request while the client holds a dedicated connection.
    pub(super) async fn handle_dedicated(
        &mut self,
        req: Request,
        spec: Option<&'static CommandSpec>,
        timing: Timing,
        plan: Option<ReplyPlan>,
    ) -> Flow {
        if let Some(spec) = spec {
            if let Some(refused) = self.refused_while_subscribed(spec, req.args().len()) {
                return self.error(&refused).await;
            }
            if !self.state.in_multi && spec.route == Route::Local {
                match spec.name {
                    // These change or read strata's own session, or must not
                    // reach the backend connection: answer locally.
                    "quit" | "readonly" | "readwrite" | "asking" | "client|reply" => {
                        return self.local(req, spec).await;
                    }
                    // Checked as anywhere, then sent on the dedicated
                    // connection too, so it runs as the new user as well.
                    "auth" => {
                        if !spec.arity_ok(req.args().len()) {
                            return self.error(&local::wrong_arity(spec.name)).await;
                        }
                        if let Err(refused) = self.log_in(req.args()).await {
                            return self.reply(refused).await;
                        }
                        // strata's own users: the backend connection stays strata's.
                        if self.shared.auth.users.is_some() {
                            return self.reply(reply::ok()).await;
                        }
                    }
                    n if n.starts_with("client|") => return self.local(req, spec).await,
                    n if n == "command" || n.starts_with("command|") => {
                        return self.local(req, spec).await
                    }
                    _ => {}
                }
            }
            if spec.route == Route::Unsupported {
                let text = format!("ERR command '{}' is not supported by strata", spec.name);
                return self.error(&text).await;
            }
        }
        let timing = match spec {
            Some(spec) => match self.shard_link_command(&req, spec, timing).await {
                Ok(flow) => return flow,
                Err(timing) => timing,
            },
            None => timing,
        };
        if let Some(refused) = self.check_pinned(spec, req.args()) {
            return self.reply(refused).await;
        }
        let mut post = Post::None;
        let mut frame = req.frame.clone();
        if let Some(spec) = spec.filter(|_| !self.state.in_multi) {
            match spec.name {
                "info" if req.args().len() == 2 && req.args()[1].eq_ignore_ascii_case(b"proxy") => {
                    let mut r = ReplyBuf::new(self.proto);
                    r.verbatim(self.shared.proxy_info().as_bytes());
                    return self.reply(r.freeze()).await;
                }
                "info" if info_wants_proxy(req.args()) => post = Post::AppendProxyInfo(self.proto),
                "client|tracking" if spec.arity_ok(req.args().len()) => {
                    match tracking::prepare(&self.shared, &self.info, req.args()).await {
                        Ok(prepared) => {
                            if let Some(rewritten) = prepared.frame {
                                frame = rewritten;
                            }
                            post = Post::Tracking(prepared.hook);
                        }
                        Err(refused) => {
                            if self.reply(refused).await == Flow::Close {
                                return Flow::Close;
                            }
                            if self.state.is_clean() {
                                return self.leave_dedicated().await;
                            }
                            return Flow::Continue;
                        }
                    }
                }
                "client|getredir" | "client|trackinginfo" => {
                    post = Post::Tracking(tracking::Hook::translate());
                }
                "hello" => match local::parse_hello(req.args()) {
                    Err(e) => return self.error(&e).await,
                    // Same protocol, same user: nothing for the backend to do.
                    Ok(h) if h.proto.is_none_or(|p| p == self.proto) && h.auth.is_none() => {
                        return self.local(req, spec).await
                    }
                    Ok(h) => {
                        // The backend connection must switch protocol (and
                        // user) too; the client sees strata's own HELLO reply.
                        let mut hello = req.args()[..2].to_vec();
                        if let Some((user, pass)) = &h.auth {
                            let auth_args =
                                [self.auth_verb(&req.args()[0]), user.clone(), pass.clone()];
                            if let Err(refused) = self.log_in(&auth_args).await {
                                return self.reply(refused).await;
                            }
                            // strata's own users: the backend connection stays strata's.
                            if self.shared.auth.users.is_none() {
                                hello.extend([
                                    Bytes::from_static(b"AUTH"),
                                    user.clone(),
                                    pass.clone(),
                                ]);
                            }
                        }
                        if let Some(name) = h.setname {
                            self.info.set_name((!name.is_empty()).then_some(name));
                        }
                        if let Some(p) = h.proto {
                            self.set_proto(p);
                        }
                        frame = crate::protocol::request::encode_command(&hello);
                        let version = self.backend_version();
                        post =
                            Post::Replace(local::hello_reply(self.proto, self.info.id, &version));
                    }
                },
                _ => {}
            }
        }
        let was_monitor = self.state.monitor;
        let was_in_multi = self.state.in_multi;
        let mut spec = spec;
        if was_in_multi && self.multi_refused && spec.is_some_and(|s| s.name == "exec") {
            // A command was refused while queueing: like Redis after a
            // queueing error, the transaction is discarded, not run in part.
            spec = command::lookup(&[Bytes::from_static(b"DISCARD")]);
            frame = Bytes::from_static(b"*1\r\n$7\r\nDISCARD\r\n");
            post = Post::Replace(reply::error(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        if was_in_multi {
            if let Some(refused) = self.refused_in_multi(spec) {
                return self.error(refused).await;
            }
        }
        let queued_script = self.state.queued_script;
        let frames = self.state.apply(spec, req.args());
        if !was_in_multi && spec.is_some_and(|s| s.name == "sunsubscribe") {
            self.info.expect_shard_unsubscribes(frames);
        }
        if !self.shared.transforms.is_empty() {
            post = self.transform_post(spec, was_in_multi, plan, post);
        }
        self.info.set_db(self.state.db);
        self.info.set_pubsub(
            self.state.channels.len(),
            self.state.patterns.len(),
            self.state.shard_channels.len(),
            self.state.in_multi,
        );
        if self.silenced(spec) {
            post = match post {
                // Silenced, the redirect still changes.
                Post::Tracking(mut hook) => {
                    hook.silent = true;
                    Post::Tracking(hook)
                }
                _ => Post::Drop,
            };
        }
        // No strata deadline for a command that may block or, like a
        // script, run for as long as it likes: a direct client would wait.
        let blocking = !self.state.in_multi
            && (spec.is_some_and(|s| {
                s.has(Flags::BLOCKING) || s.has(Flags::RUNS_SCRIPT) || s.name == "wait"
            }) || (was_in_multi && queued_script));
        let seq = self.dedicated.as_mut().map_or(0, |d| d.next_seq(blocking));
        let expect = Expect {
            frames,
            timeout: (!blocking).then(|| self.shared.backend.request_timeout()),
            deadline: None,
            seq,
            monitor: spec.is_some_and(|s| s.name == "monitor") && !was_monitor,
            post: if self.suppress_reply {
                Post::Drop
            } else {
                post
            },
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
        if spec.is_some_and(|s| s.name == "reset") {
            self.reset_session();
        }
        // The entry goes first, so the writer expects the reply before it can arrive.
        if !self.queue(Pending::Expect(expect)).await {
            return Flow::Close;
        }
        if let Some(d) = self.dedicated.as_mut() {
            d.out.extend_from_slice(&frame);
        }
        if self.state.is_clean() {
            return self.leave_dedicated().await;
        }
        Flow::Continue
    }

    /// CLIENT REPLY OFF/SKIP for a command forwarded on the dedicated
    /// connection: true when its reply is to be dropped (SKIP is used up).
    /// Redis still sends what it *pushes* (`CLIENT_PUSHING` in
    /// networking.c `prepareClientToWrite`): the (un)subscribe
    /// confirmations, in RESP2 and RESP3, like the messages, which pass
    /// out of band anyway. RESET answers `+RESET` after turning replies on.
    fn silenced(&mut self, spec: Option<&'static CommandSpec>) -> bool {
        if self.reply_mode == ReplyMode::On {
            return false;
        }
        let name = spec.map_or("", |s| s.name);
        if name == "reset" {
            return false;
        }
        if self.reply_mode == ReplyMode::Skip {
            self.reply_mode = ReplyMode::On;
        }
        !matches!(
            name,
            "subscribe"
                | "psubscribe"
                | "ssubscribe"
                | "unsubscribe"
                | "punsubscribe"
                | "sunsubscribe"
        )
    }

    /// A RESP2 client that is subscribed may only (un)subscribe, PING,
    /// QUIT and RESET, as Redis says. strata answers the rest itself, the
    /// commands it would otherwise answer locally (CLIENT …, AUTH, …)
    /// included, and the state it predicts for the connection is not
    /// touched by a command Redis would refuse.
    fn refused_while_subscribed(&self, spec: &CommandSpec, argc: usize) -> Option<String> {
        if self.proto != Protocol::Resp2
            || self.state.in_multi
            || !self.state.subscribed()
            || !spec.arity_ok(argc)
        {
            return None;
        }
        match spec.name {
            "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
            | "sunsubscribe" | "ping" | "quit" | "reset" => None,
            name => Some(format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            )),
        }
    }

    /// Inside MULTI, commands whose effect on the connection strata could
    /// only guess after EXEC (a subscription, tracking: EXEC may run them
    /// or not) are refused with Redis's own text for commands not allowed
    /// in a transaction, and the transaction is aborted at EXEC, as Redis
    /// does after a queueing error. Otherwise a subscription made by EXEC
    /// would be lost when strata hands the connection back.
    pub(super) fn refused_in_multi(
        &mut self,
        spec: Option<&'static CommandSpec>,
    ) -> Option<&'static str> {
        match spec?.name {
            "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
            | "sunsubscribe" | "client|tracking" => {
                self.multi_refused = true;
                Some("ERR Command not allowed inside a transaction")
            }
            _ => None,
        }
    }

    /// On a dedicated connection: how the reply of a command about to be
    /// forwarded is opened. Inside MULTI, each queued command's plan is kept
    /// for the EXEC reply (its own reply is `+QUEUED`).
    pub(super) fn transform_post(
        &mut self,
        spec: Option<&'static CommandSpec>,
        was_in_multi: bool,
        plan: Option<ReplyPlan>,
        post: Post,
    ) -> Post {
        let name = spec.map(|s| s.name);
        if !was_in_multi {
            if name == Some("multi") {
                self.multi_plans.clear();
                self.multi_refused = false;
            }
            return match plan {
                Some(plan) => Post::Transform(Box::new(plan)),
                None => post,
            };
        }
        match name {
            Some("exec") => {
                self.multi_refused = false;
                let plans = std::mem::take(&mut self.multi_plans);
                if plans.iter().any(Option::is_some) {
                    return Post::TransformExec(plans);
                }
            }
            Some("discard") | Some("reset") => {
                self.multi_plans.clear();
                self.multi_refused = false;
            }
            // Not queued by Redis: answered at once.
            Some("multi") | Some("watch") | Some("quit") => {}
            // Queued (`+QUEUED`), or refused by Redis, which then aborts
            // the transaction at EXEC anyway.
            _ => self.multi_plans.push(plan),
        }
        post
    }

    /// Writes the commands buffered for the dedicated connection. False
    /// when that connection failed (the writer reports it to the client).
    pub(super) async fn flush_dedicated(&mut self) -> bool {
        if self.dedicated.as_ref().is_some_and(|d| !d.out.is_empty()) && !self.await_barrier().await
        {
            return false;
        }
        let Some(d) = self.dedicated.as_mut() else {
            return true;
        };
        // The writer may have moved the subscriptions to a new connection.
        while let Ok(swap) = self.swaps.try_recv() {
            d.wr = swap.wr;
            d.conn = swap.conn;
            self.shard_links.main_addr = swap.addr;
        }
        if d.out.is_empty() {
            return true;
        }
        let mut ok = crate::tls::write_flush(&mut d.wr, &d.out).await.is_ok();
        if !ok && self.state.subscribed() && !self.state.in_multi {
            // A subscriber's connection died: wait for the writer to
            // subscribe again elsewhere, then send there.
            let wait = tokio::time::timeout(std::time::Duration::from_secs(16), self.swaps.recv());
            if let Ok(Some(swap)) = wait.await {
                d.wr = swap.wr;
                d.conn = swap.conn;
                self.shard_links.main_addr = swap.addr;
                ok = crate::tls::write_flush(&mut d.wr, &d.out).await.is_ok();
            }
        }
        d.out.clear();
        ok
    }

    /// Takes the write half of the connection the writer moved the
    /// client's subscriptions to; the old one is dropped (closed).
    pub(super) fn take_swap(&mut self, swap: crate::server::writer::DedicatedSwap) {
        if let Some(d) = self.dedicated.as_mut() {
            d.wr = swap.wr;
            d.conn = swap.conn;
            self.shard_links.main_addr = swap.addr;
        }
    }

    /// Hands the dedicated connection back (via the writer, once every
    /// reply due on it is written) and returns to multiplexed mode.
    pub(super) async fn leave_dedicated(&mut self) -> Flow {
        if !self.flush_dedicated().await {
            return Flow::Close;
        }
        self.pinned_slot = None;
        let Some(d) = self.dedicated.take() else {
            return Flow::Continue;
        };
        // Scripts leave no state on the connection: a RESP2 one goes back
        // as it is; RESET takes any other back to RESP2 and no state.
        let reset = d.script_run.is_none() || self.proto != Protocol::Resp2;
        let ret = DedicatedReturn {
            wr: d.wr,
            conn: d.conn,
            links: self.shard_links.end(),
            reset,
        };
        // Commands sent next on the multiplexed connection wait until the
        // dedicated connection has answered everything sent on it.
        if self.queue(Pending::LeaveDedicated(Box::new(ret))).await && self.set_barrier().await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }
}
