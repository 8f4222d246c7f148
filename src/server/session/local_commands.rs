//! The commands a session answers itself (PING, HELLO, CLIENT …, SELECT).

use super::*;

impl Session {
    /// The version HELLO reports: the backend's, once known.
    pub(super) fn backend_version(&self) -> String {
        let version = self.shared.backend.primary().version();
        if version.is_empty() {
            "7.0.0".to_string()
        } else {
            version
        }
    }

    pub(super) fn set_proto(&mut self, proto: Protocol) {
        self.proto = proto;
        self.info.set_resp(proto.version() as u8);
    }

    pub(super) fn reset_session(&mut self) {
        self.log_out();
        self.set_proto(Protocol::Resp2);
        self.reply_mode = ReplyMode::On;
        self.info.set_name(None);
        self.info.set_db(0);
        // RESET turns tracking off: the redirect's listener closes.
        self.info.tracking.clear();
    }

    /// Commands strata answers itself, each watched by the slow log from
    /// when strata takes it up to when its reply is queued
    /// (`admin/slow_watch.rs`). SELECT n and the COMMAND forms are
    /// recorded where their reply is made (the dedicated connection, the
    /// merging task).
    pub(super) async fn local(&mut self, req: Request, spec: &'static CommandSpec) -> Flow {
        let watched = !matches!(
            spec.name,
            "select"
                | "command"
                | "command|info"
                | "command|docs"
                | "command|count"
                | "command|list"
        );
        // A PING pays a clock read and a reference to its frame; the watch
        // (an allocation and a copy) is made only for a slow one.
        let started = Instant::now();
        let frame = (watched && self.shared.slowlog.is_on()).then(|| req.frame.clone());
        let flow = self.local_answer(req, spec).await;
        if let Some(frame) = frame {
            if started.elapsed() >= self.shared.slowlog.threshold() {
                // Dropped at once: recorded.
                drop(crate::admin::slow_watch::SlowWatch::start(
                    &self.shared,
                    &self.info,
                    &frame,
                    started,
                ));
            }
        }
        flow
    }

    async fn local_answer(&mut self, req: Request, spec: &'static CommandSpec) -> Flow {
        let args = req.args();
        if !spec.arity_ok(args.len()) {
            return self.error(&local::wrong_arity(spec.name)).await;
        }
        let proto = self.proto;
        match spec.name {
            "ping" => {
                if args.len() > 2 {
                    return self.error(&local::wrong_arity("ping")).await;
                }
                self.reply(local::ping(proto, args)).await
            }
            "echo" => self.reply(local::echo(proto, args)).await,
            "quit" => {
                let _ = self.reply(reply::ok()).await;
                let _ = self.queue(Pending::Close).await;
                Flow::Close
            }
            "reset" => {
                self.reset_session();
                self.reply_mode = ReplyMode::On;
                self.reply(Bytes::from_static(b"+RESET\r\n")).await
            }
            "hello" => match local::parse_hello(args) {
                Err(e) => self.error(&e).await,
                Ok(h) => {
                    if let Some((user, pass)) = &h.auth {
                        let auth_args =
                            [self.auth_verb(&req.args()[0]), user.clone(), pass.clone()];
                        if let Err(refused) = self.log_in(&auth_args).await {
                            return self.reply(refused).await;
                        }
                    }
                    // A failed AUTH switched nothing; without AUTH, a client
                    // that must log in may not switch either.
                    if !self.auth.is_authenticated() {
                        return self.error(crate::auth::NOAUTH_HELLO).await;
                    }
                    if let Some(p) = h.proto {
                        self.set_proto(p);
                    }
                    if let Some(name) = h.setname {
                        self.info.set_name((!name.is_empty()).then_some(name));
                    }
                    let version = self.backend_version();
                    self.reply(local::hello_reply(self.proto, self.info.id, &version))
                        .await
                }
            },
            "auth" => match self.log_in(args).await {
                Ok(()) => self.reply(reply::ok()).await,
                Err(refused) => self.reply(refused).await,
            },
            "select" => self.select(req, spec).await,
            // Only a cluster node knows them; a standalone Redis (and so
            // strata in front of one, or of Sentinel) refuses them.
            "readonly" | "readwrite" | "asking" if self.cluster.is_none() => {
                self.error(local::NO_CLUSTER).await
            }
            "readonly" | "readwrite" | "asking" => self.reply(reply::ok()).await,
            "client|setname" => {
                let name = &args[2];
                if !local::valid_name(name) {
                    return self.error(local::BAD_NAME).await;
                }
                self.info.set_name((!name.is_empty()).then(|| name.clone()));
                self.reply(reply::ok()).await
            }
            "client|getname" => {
                let mut r = ReplyBuf::new(proto);
                match self.info.name() {
                    Some(n) => r.bulk(&n),
                    None => r.null(),
                };
                self.reply(r.freeze()).await
            }
            "client|id" => {
                let mut r = ReplyBuf::new(proto);
                r.integer(self.info.id as i64);
                self.reply(r.freeze()).await
            }
            "client|info" => {
                self.info
                    .touch(self.shared.clients.epoch(), Instant::now(), spec.name);
                let bytes = local::client_info(proto, &self.info, &self.shared.clients);
                self.reply(bytes).await
            }
            "client|list" => {
                self.info
                    .touch(self.shared.clients.epoch(), Instant::now(), spec.name);
                let bytes = local::client_list(proto, args, &self.shared.clients);
                self.reply(bytes).await
            }
            "client|reply" => {
                let mode = args[2].to_ascii_lowercase();
                match mode.as_slice() {
                    b"on" => {
                        self.reply_mode = ReplyMode::On;
                        self.reply(reply::ok()).await
                    }
                    b"off" => {
                        self.reply_mode = ReplyMode::Off;
                        Flow::Continue
                    }
                    b"skip" => {
                        if self.reply_mode == ReplyMode::On {
                            self.reply_mode = ReplyMode::Skip;
                        }
                        Flow::Continue
                    }
                    _ => self.error("ERR syntax error").await,
                }
            }
            "client|kill" => {
                let args = args.to_vec();
                self.client_kill(&args).await
            }
            "client|unblock" => self.client_unblock(args).await,
            "client|setinfo" | "client|no-evict" => self.reply(reply::ok()).await,
            // The backend's reply with strata's own commands (PROXY …) added.
            "command" | "command|info" | "command|docs" | "command|count" | "command|list" => {
                self.command_with_own(req).await
            }
            // Connection-state commands the table routes locally but that
            // only make sense on a dedicated connection.
            _ => {
                let timing = Timing {
                    started: Instant::now(),
                    metrics: None,
                };
                self.forward(req, Some(spec), Post::None, timing, false)
                    .await
            }
        }
    }

    /// CLIENT UNBLOCK id [TIMEOUT|ERROR], for strata's client ids: the
    /// client's dedicated connection is unblocked on its node by the
    /// backend's own CLIENT UNBLOCK, whose reply (1 if it was blocked) this
    /// client gets. A client holding no dedicated connection is not blocked: 0.
    async fn client_unblock(&mut self, args: &[Bytes]) -> Flow {
        if args.len() > 4 {
            let text = format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&args[1])
            );
            return self.error(&text).await;
        }
        let mode: &'static [u8] = match args.get(3).map(|m| m.to_ascii_lowercase()) {
            None => b"TIMEOUT",
            Some(m) if m == b"timeout" => b"TIMEOUT",
            Some(m) if m == b"error" => b"ERROR",
            Some(_) => {
                return self
                    .error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
                    .await
            }
        };
        let Some(id) = crate::protocol::request::parse_int(&args[2]) else {
            return self
                .error("ERR value is not an integer or out of range")
                .await;
        };
        let target = u64::try_from(id)
            .ok()
            .and_then(|id| self.shared.clients.get(id))
            .and_then(|client| client.dedicated_on());
        let Some((node, backend_id)) = target else {
            let mut r = ReplyBuf::new(self.proto);
            r.integer(0);
            return self.reply(r.freeze()).await;
        };
        // Sent on the caller's multiplexed connection: after what the
        // caller sent before it, as any command.
        if !self.flush_batch().await || !self.await_barrier().await {
            return Flow::Close;
        }
        let frame = crate::protocol::request::encode_command(&[
            Bytes::from_static(b"CLIENT"),
            Bytes::from_static(b"UNBLOCK"),
            Bytes::from(backend_id.to_string()),
            Bytes::from_static(mode),
        ]);
        let reply = node
            .send(self.info.id, self.proto, frame, 1, self.auth.backend_user())
            .await;
        let timing = Timing {
            started: Instant::now(),
            metrics: None,
        };
        if self
            .queue(Pending::Backend {
                reply,
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

    /// SELECT: database 0 stays multiplexed; any other takes a dedicated connection.
    pub(super) async fn select(&mut self, req: Request, spec: &'static CommandSpec) -> Flow {
        let Some(db) = crate::protocol::request::parse_int(&req.args()[1]) else {
            return self
                .error("ERR value is not an integer or out of range")
                .await;
        };
        if db == 0 {
            return self.reply(reply::ok()).await;
        }
        if i32::try_from(db).is_err() || db < 0 {
            return self.error("ERR DB index is out of range").await;
        }
        if let Err(e) = self.enter_dedicated(None).await {
            return self.reply(e.to_reply()).await;
        }
        let timing = Timing {
            started: Instant::now(),
            metrics: None,
        };
        // Boxed: handle_dedicated can call back into local() (and so here).
        Box::pin(self.handle_dedicated(req, Some(spec), timing, None)).await
    }
}
