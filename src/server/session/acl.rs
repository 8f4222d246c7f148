//! ACL commands in users mode (`auth.mode = "users"`): answered from
//! strata's users (`auth/users.rs`) in Redis 7.0's words, never sent to
//! the backend, whose users are not the application's. Also the ACL log
//! entry and the MULTI flag for a command the policy refused.

use super::*;
use crate::auth::acl::{describe, table::ACL_SPECS, table::CATEGORIES};
use crate::auth::users::LogEntry;

impl Session {
    /// True while the client is inside MULTI (on a dedicated connection,
    /// or queued in cluster mode).
    fn in_multi(&self) -> bool {
        (self.dedicated.is_some() && self.state.in_multi) || self.unbound_multi.is_some()
    }

    /// A command the policy refused: a refusal inside MULTI aborts the
    /// transaction at EXEC (Redis's `flagTransaction`), and an ACL
    /// refusal goes into the ACL log.
    pub(super) fn policy_refused(&mut self) {
        if self.in_multi() {
            self.multi_refused = true;
        }
        let Some(guard) = self.auth.guard_mut() else {
            return;
        };
        let (Some(refusal), Some(users)) = (guard.take_refusal(), guard.users().cloned()) else {
            return;
        };
        users.log(LogEntry {
            count: 1,
            reason: refusal.reason,
            context: if self.in_multi() { "multi" } else { "toplevel" },
            object: refusal.object,
            username: refusal.username,
            at: Instant::now(),
            client_info: self.info.line(self.shared.clients.epoch()),
        });
    }

    /// A failed AUTH (or HELLO … AUTH: `verb`, as the client wrote it) in
    /// users mode, for the ACL log.
    pub(super) fn log_failed_auth(&self, verb: &[u8], username: &[u8]) {
        if let Some(users) = &self.shared.auth.users {
            users.log(LogEntry {
                count: 1,
                reason: "auth",
                context: if self.in_multi() { "multi" } else { "toplevel" },
                object: String::from_utf8_lossy(verb).into_owned(),
                username: String::from_utf8_lossy(username).into_owned(),
                at: Instant::now(),
                client_info: self.info.line(self.shared.clients.epoch()),
            });
        }
    }

    /// The first word of the AUTH that HELLO … AUTH makes: `AUTH` for the
    /// backend in passthrough mode; the client's own `HELLO` in users mode,
    /// which the ACL log records as Redis does.
    pub(super) fn auth_verb(&self, hello: &Bytes) -> Bytes {
        if self.shared.auth.users.is_some() {
            hello.clone()
        } else {
            Bytes::from_static(b"AUTH")
        }
    }

    /// `ACL …` answered from strata's users.
    pub(super) async fn acl_command(&mut self, req: Request) -> Flow {
        let Some(users) = self.shared.auth.users.clone() else {
            return self.error("ERR unknown subcommand").await;
        };
        let args = req.args();
        let sub = args
            .get(1)
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        let arg = |i: usize| String::from_utf8_lossy(&args[i]).into_owned();
        let mut r = ReplyBuf::new(self.proto);
        match (sub.as_slice(), args.len()) {
            (b"whoami", 2) => {
                let name = self.auth.user_name(&self.shared.auth).clone();
                r.bulk(&name);
            }
            (b"users", 2) => {
                let names = users.names();
                r.array(names.len());
                for n in names {
                    r.bulk(n.as_bytes());
                }
            }
            (b"list", 2) => {
                let all = users.all();
                r.array(all.len());
                for (name, user, _) in all {
                    r.bulk(format!("user {name} {}", describe::user(&user)).as_bytes());
                }
            }
            (b"getuser", 3) => match users.get(&arg(2)).and_then(|c| (**c.acl.load()).clone()) {
                None => {
                    r.null();
                }
                Some(u) => {
                    r.map(6);
                    r.bulk(b"flags");
                    let flags = describe::flags(&u);
                    if self.proto == Protocol::Resp3 {
                        r.raw(format!("~{}\r\n", flags.len()).as_bytes());
                    } else {
                        r.array(flags.len());
                    }
                    for f in flags {
                        r.bulk(f.as_bytes());
                    }
                    r.bulk(b"passwords");
                    r.array(u.passwords.len());
                    for p in &u.passwords {
                        r.bulk(p.as_bytes());
                    }
                    r.bulk(b"commands");
                    r.bulk(describe::commands(&u).as_bytes());
                    r.bulk(b"keys");
                    r.bulk(describe::keys(&u).join(" ").as_bytes());
                    r.bulk(b"channels");
                    r.bulk(describe::channels(&u).join(" ").as_bytes());
                    r.bulk(b"selectors");
                    r.array(0);
                }
            },
            (b"cat", 2) => {
                r.array(CATEGORIES.len());
                for c in CATEGORIES {
                    r.bulk(c.as_bytes());
                }
            }
            (b"cat", 3) => match crate::auth::acl::rules::category_bit(&args[2]) {
                None => {
                    let text = format!("ERR Unknown category '{}'", arg(2));
                    return self.error(&text).await;
                }
                Some(bit) => {
                    let names: Vec<&str> = ACL_SPECS
                        .iter()
                        .filter(|s| s.categories & bit != 0)
                        .map(|s| s.name)
                        .collect();
                    r.array(names.len());
                    for n in names {
                        r.bulk(n.as_bytes());
                    }
                }
            },
            (b"setuser", n) if n >= 3 => {
                let name = arg(2);
                if args[2].iter().any(|b| b.is_ascii_whitespace() || *b == 0) {
                    return self
                        .error("ERR Usernames can't contain spaces or null characters")
                        .await;
                }
                if let Err(e) = users.set_user(&name, &args[3..]) {
                    return self.error(&format!("ERR {e}")).await;
                }
                r.simple("OK");
            }
            (b"deluser", n) if n >= 3 => {
                if args[2..].iter().any(|a| a.as_ref() == b"default") {
                    return self.error("ERR The 'default' user cannot be removed").await;
                }
                let names: Vec<String> = (2..n).map(arg).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let deleted = users.delete(&refs);
                // Redis disconnects the deleted users' clients.
                for name in &names {
                    let filter = crate::server::clients::KillFilter {
                        user: Some(Bytes::from(name.clone())),
                        ..Default::default()
                    };
                    let _ = self.shared.clients.kill(&filter, self.info.id);
                }
                r.integer(deleted as i64);
            }
            (b"log", 2 | 3) => {
                let mut count = 10usize;
                if args.len() == 3 {
                    if args[2].eq_ignore_ascii_case(b"reset") {
                        users.log_reset();
                        return self.reply(reply::ok()).await;
                    }
                    match crate::protocol::request::parse_int(&args[2]) {
                        Some(n) => count = usize::try_from(n).unwrap_or(0),
                        None => {
                            return self
                                .error("ERR value is not an integer or out of range")
                                .await
                        }
                    }
                }
                let entries = users.log_entries(count);
                r.array(entries.len());
                let now = Instant::now();
                for e in entries {
                    r.map(7);
                    r.bulk(b"count");
                    r.integer(e.count as i64);
                    r.bulk(b"reason");
                    r.bulk(e.reason.as_bytes());
                    r.bulk(b"context");
                    r.bulk(e.context.as_bytes());
                    r.bulk(b"object");
                    r.bulk(e.object.as_bytes());
                    r.bulk(b"username");
                    r.bulk(e.username.as_bytes());
                    r.bulk(b"age-seconds");
                    let age = format!("{}", now.saturating_duration_since(e.at).as_secs_f64());
                    if self.proto == Protocol::Resp3 {
                        r.raw(format!(",{age}\r\n").as_bytes());
                    } else {
                        r.bulk(age.as_bytes());
                    }
                    r.bulk(b"client-info");
                    r.bulk(e.client_info.as_bytes());
                }
            }
            (b"dryrun", n) if n >= 4 => {
                let Some(user) = users.get(&arg(2)).and_then(|c| (**c.acl.load()).clone()) else {
                    return self
                        .error(&format!("ERR User '{}' not found", arg(2)))
                        .await;
                };
                let cmd = &args[3..];
                let Some(spec) = crate::command::lookup(cmd) else {
                    return self
                        .error(&format!("ERR Command '{}' not found", arg(3)))
                        .await;
                };
                if !spec.arity_ok(cmd.len()) {
                    return self
                        .error(&format!(
                            "ERR wrong number of arguments for '{}' command",
                            spec.name
                        ))
                        .await;
                }
                match crate::auth::Guard::dry_run(&user, spec, cmd) {
                    None => r.simple("OK"),
                    Some(text) => r.bulk(text.as_bytes()),
                };
            }
            (b"save", 2) => match users.save() {
                Ok(()) => {
                    r.simple("OK");
                }
                Err(e) => {
                    return self
                        .error(&format!(
                            "ERR There was an error trying to save the ACLs. Please check the server logs for more information ({e})"
                        ))
                        .await
                }
            },
            (b"genpass", 2 | 3) => match genpass(args.get(2)) {
                Ok(hex) => {
                    r.bulk(hex.as_bytes());
                }
                Err(text) => return self.error(text).await,
            },
            (b"load", 2) => match users.load_file() {
                Ok(names) => {
                    // Redis 7.0 disconnects the clients of every user but
                    // `default` (their user objects are freed), this one too
                    // once answered.
                    let mut me = false;
                    for name in names {
                        let filter = crate::server::clients::KillFilter {
                            user: Some(Bytes::from(name)),
                            ..Default::default()
                        };
                        me |= self.shared.clients.kill(&filter, self.info.id).1;
                    }
                    let flow = self.reply(reply::ok()).await;
                    return if me { Flow::Close } else { flow };
                }
                Err(text) => return self.error(&format!("ERR {text}")).await,
            },
            (b"help", _) => {
                return self
                    .error("ERR strata does not support this ACL subcommand in users mode")
                    .await;
            }
            _ => {
                let text = format!(
                    "ERR unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
                    String::from_utf8_lossy(args.get(1).map_or(&b""[..], |b| b))
                );
                return self.error(&text).await;
            }
        }
        self.reply(r.freeze()).await
    }
}

/// ACL GENPASS [bits]: Redis's (acl.c): 256 bits by default, at most 4096,
/// as lower-case hex, one character per 4 bits rounded up, from the
/// operating system's random source.
fn genpass(bits: Option<&Bytes>) -> Result<String, &'static str> {
    const MAX_BITS: i64 = 4096;
    let bits = match bits {
        None => 256,
        Some(b) => crate::protocol::request::parse_int(b)
            .ok_or("ERR value is not an integer or out of range")?,
    };
    if bits <= 0 || bits > MAX_BITS {
        return Err("ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096");
    }
    let chars = ((bits + 3) / 4) as usize;
    let mut random = vec![0u8; chars.div_ceil(2)];
    getrandom::fill(&mut random).map_err(|_| "ERR failed to get random bytes")?;
    let mut hex = String::with_capacity(chars + 1);
    for b in &random {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.truncate(chars);
    Ok(hex)
}
