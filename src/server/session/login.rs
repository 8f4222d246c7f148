//! Logging in and out: AUTH and HELLO … AUTH checked against the backend
//! (`auth/passthrough.rs`), RESET back to the default user, and CLIENT
//! KILL USER, whose user the backend must know.

use super::*;
use crate::auth::passthrough::{self, Verdict};

impl Session {
    /// Checks AUTH's arguments (`AUTH [user] pass`) as the backend would;
    /// once it accepts them, the client is that user. `Err`: the reply to
    /// give instead, the backend's own refusal (WRONGPASS, …) or why it
    /// could not be asked.
    pub(super) async fn log_in(&mut self, auth_args: &[Bytes]) -> Result<(), Bytes> {
        // Boxed: the connect and the exchange would otherwise make every
        // command's `handle` future larger, AUTH or not.
        let result = Box::pin(self.check_and_log_in(auth_args)).await;
        let user = crate::auth::credentials(auth_args);
        self.audit_login(user.as_ref().map(|c| &c.name[..]), &result);
        result
    }

    async fn check_and_log_in(&mut self, auth_args: &[Bytes]) -> Result<(), Bytes> {
        let Some(user) = crate::auth::credentials(auth_args) else {
            return Err(reply::error("ERR syntax error"));
        };
        // An address that failed too often waits before it may try again.
        let ip = self.info.addr.ip();
        let limiter = self.shared.auth.limiter.clone();
        if !limiter.may_try(ip, Instant::now()) {
            return Err(reply::error(crate::auth::limits::HELD_BACK));
        }
        if self.shared.auth.users.is_some() {
            let result = self.log_in_user(&auth_args[0], auth_args.len() == 2, &user);
            match &result {
                Ok(()) => limiter.succeeded(ip),
                // The password was right: not a failure to hold back.
                Err(e) if e.as_ref() == reply::error(crate::auth::users::MAX_CONNECTIONS) => {}
                Err(_) => limiter.failed(ip, Instant::now()),
            }
            return result;
        }
        let node = self.auth_node();
        match passthrough::check(node.addr(), node.request_timeout(), node.tls(), auth_args).await {
            Err(e) => return Err(e.to_reply()),
            Ok(Verdict::Refused(reply)) => {
                limiter.failed(ip, Instant::now());
                return Err(reply);
            }
            Ok(Verdict::Accepted) => limiter.succeeded(ip),
        }
        if !self.shared.auth.is_own(&user) {
            node.users().ensure(&user).map_err(|e| e.to_reply())?;
        }
        let before = self.auth.backend_user().cloned();
        self.auth.log_in(&self.shared.auth, user);
        let name = self.auth.user_name(&self.shared.auth).clone();
        let switched = before.as_ref() != self.auth.backend_user();
        self.info.set_user(name);
        // Later commands go on another user's connections: they wait for
        // the replies to the earlier ones, as on one Redis connection.
        if switched && self.dedicated.is_none() && !self.set_barrier().await {
            return Err(Bytes::new());
        }
        Ok(())
    }

    /// Users mode: AUTH checked against strata's own users (acl.c
    /// `authCommand`, `ACLCheckUserCredentials`), in Redis's words.
    fn log_in_user(
        &mut self,
        verb: &[u8],
        default_form: bool,
        user: &crate::backend::users::Credentials,
    ) -> Result<(), Bytes> {
        let Some(users) = self.shared.auth.users.clone() else {
            return Err(reply::error("ERR syntax error"));
        };
        let name = String::from_utf8_lossy(&user.name).into_owned();
        let cell = users.get(&name);
        if default_form
            && cell
                .as_ref()
                .is_some_and(|c| c.acl.load().as_ref().as_ref().is_some_and(|u| u.nopass))
        {
            return Err(reply::error(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            ));
        }
        let accepted = cell.as_ref().is_some_and(|c| {
            c.acl
                .load()
                .as_ref()
                .as_ref()
                .is_some_and(|u| u.accepts(&user.password))
        });
        match cell {
            Some(cell) if accepted => {
                if !self.auth.log_in_as(user.name.clone(), cell) {
                    return Err(reply::error(crate::auth::users::MAX_CONNECTIONS));
                }
                self.info.set_user(user.name.clone());
                Ok(())
            }
            _ => {
                self.log_failed_auth(verb, &user.name);
                Err(reply::error(
                    "WRONGPASS invalid username-password pair or user is disabled.",
                ))
            }
        }
    }

    /// The node AUTH is checked on: the primary (in cluster mode, one of
    /// the primaries, by client id).
    fn auth_node(&self) -> Arc<crate::backend::node::Node> {
        self.cluster
            .as_ref()
            .and_then(|c| c.view().any_primary(self.info.id).cloned())
            .unwrap_or_else(|| self.shared.backend.primary())
    }

    /// RESET: the client is the default user again (not logged in, when
    /// a password is required).
    pub(super) fn log_out(&mut self) {
        self.auth.reset(&self.shared.auth);
        self.info
            .set_user(self.auth.user_name(&self.shared.auth).clone());
    }

    /// CLIENT KILL: strata's own clients, selected by Redis's filters. A
    /// USER filter is first put to the backend, as this client, with a
    /// filter that matches none of its connections: the reply says
    /// whether the user exists (and whether this client may kill), in
    /// Redis's words.
    pub(super) async fn client_kill(&mut self, args: &[Bytes]) -> Flow {
        let (filter, old_form) = match local::parse_client_kill(args) {
            Ok(parsed) => parsed,
            Err(e) => return self.error(&e).await,
        };
        if let Some(user) = &filter.user {
            if let Some(refusal) = self.backend_refuses_kill(user.clone()).await {
                return self.reply(refusal).await;
            }
        }
        let (killed, me) = self.shared.clients.kill(&filter, self.info.id);
        let flow = self
            .reply(local::client_kill_reply(self.proto, old_form, killed))
            .await;
        // Killed itself: closed once the reply is written, as in Redis.
        if me {
            Flow::Close
        } else {
            flow
        }
    }

    /// `CLIENT KILL USER <user> ID <none>` on the client's connection: the
    /// backend's error if it has one.
    async fn backend_refuses_kill(&mut self, user: Bytes) -> Option<Bytes> {
        if !self.flush_batch().await || !self.await_barrier().await {
            return None;
        }
        let frame = crate::protocol::request::encode_command(&[
            Bytes::from_static(b"CLIENT"),
            Bytes::from_static(b"KILL"),
            Bytes::from_static(b"USER"),
            user,
            Bytes::from_static(b"ID"),
            Bytes::from(i64::MAX.to_string()),
        ]);
        let reply = self
            .auth_node()
            .send(self.info.id, self.proto, frame, 1, self.auth.backend_user())
            .await;
        match reply.await {
            Ok(Ok(bytes)) if bytes.first() == Some(&b':') => None,
            Ok(Ok(bytes)) => Some(bytes),
            Ok(Err(e)) => Some(e.to_reply()),
            Err(_) => Some(reply::error("ERR backend connection lost")),
        }
    }
}
