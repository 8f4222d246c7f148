//! What the sentinels and the servers say, and what strata decides from it.
//!
//! Everything here is pure (no I/O), so each decision the follower makes —
//! which answer to believe, whether a switch is real, which replicas may
//! serve reads — is unit-tested on its own.

use super::control::Value;

/// What `ROLE` says about a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A primary, with its replication offset and its connected replicas
    /// (`host:port`, acknowledged offset).
    Master {
        /// `master_repl_offset`.
        offset: i64,
        /// Connected replicas and the offset each last acknowledged.
        replicas: Vec<(String, i64)>,
    },
    /// A replica of `master` (`host:port`), in replication `state`.
    Replica {
        /// Its primary.
        master: String,
        /// `connect`, `connecting`, `sync`, `connected`, …
        state: String,
    },
    /// Anything else (a sentinel).
    Other(String),
}

impl Role {
    /// Decodes a `ROLE` reply.
    pub fn parse(v: &Value) -> Option<Role> {
        let a = v.as_array()?;
        let kind = a.first()?.as_str()?;
        match kind.as_str() {
            "master" => {
                let offset = a.get(1)?.as_int()?;
                let replicas = a
                    .get(2)?
                    .as_array()?
                    .iter()
                    .filter_map(|r| {
                        let r = r.as_array()?;
                        let host = r.first()?.as_str()?;
                        let port = r.get(1)?.as_int()?;
                        let offset = r.get(2)?.as_int()?;
                        Some((join_addr(&host, port), offset))
                    })
                    .collect();
                Some(Role::Master { offset, replicas })
            }
            "slave" | "replica" => {
                let host = a.get(1)?.as_str()?;
                let port = a.get(2)?.as_int()?;
                let state = a.get(3)?.as_str()?;
                Some(Role::Replica {
                    master: join_addr(&host, port),
                    state,
                })
            }
            other => Some(Role::Other(other.to_string())),
        }
    }

    /// True for a primary.
    pub fn is_master(&self) -> bool {
        matches!(self, Role::Master { .. })
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub fn join_addr(host: &str, port: i64) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One replica as `SENTINEL REPLICAS <name>` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// `host:port`.
    pub addr: String,
    /// The `flags` field, e.g. `slave`, `s_down,slave,disconnected`.
    pub flags: String,
    /// The `master-link-status` field (`ok` or `err`).
    pub link_status: String,
    /// `slave-repl-offset`, as of the sentinel's last INFO.
    pub offset: i64,
}

impl ReplicaInfo {
    /// Decodes one entry of `SENTINEL REPLICAS`.
    pub fn parse(v: &Value) -> Option<ReplicaInfo> {
        let fields = v.as_fields()?;
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        let host = get("ip")?;
        let port: i64 = get("port")?.parse().ok()?;
        Some(ReplicaInfo {
            addr: join_addr(&host, port),
            flags: get("flags").unwrap_or_default(),
            link_status: get("master-link-status").unwrap_or_default(),
            offset: get("slave-repl-offset")
                .and_then(|o| o.parse().ok())
                .unwrap_or(0),
        })
    }

    /// Why this replica may not serve reads, if it may not.
    pub fn unusable(&self) -> Option<&'static str> {
        let flagged = |f: &str| self.flags.split(',').any(|x| x == f);
        if flagged("s_down") || flagged("o_down") {
            Some("down")
        } else if flagged("disconnected") {
            Some("disconnected")
        } else if self.link_status != "ok" {
            Some("master link not ok")
        } else {
            None
        }
    }
}

/// Which replicas may serve reads: those the sentinels see up with their
/// link to the primary up, that are not the primary itself, and — when the
/// primary's `ROLE` is known — that are connected to it with at most
/// `max_lag` bytes of acknowledged offset behind it (0 = no bound).
/// Returns the usable addresses in the sentinel's order, and the skipped
/// ones with the reason.
pub fn usable_replicas(
    infos: &[ReplicaInfo],
    primary: &str,
    primary_role: Option<&Role>,
    max_lag: u64,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    for info in infos {
        if info.addr == primary {
            continue;
        }
        if let Some(why) = info.unusable() {
            skipped.push((info.addr.clone(), why.to_string()));
            continue;
        }
        if let Some(Role::Master { offset, replicas }) = primary_role {
            match replicas.iter().find(|(a, _)| *a == info.addr) {
                None => {
                    skipped.push((
                        info.addr.clone(),
                        "not connected to the primary".to_string(),
                    ));
                    continue;
                }
                Some((_, acked)) => {
                    let lag = offset.saturating_sub(*acked).max(0) as u64;
                    if max_lag > 0 && lag > max_lag {
                        skipped.push((info.addr.clone(), format!("{lag} bytes behind")));
                        continue;
                    }
                }
            }
        }
        if !usable.contains(&info.addr) {
            usable.push(info.addr.clone());
        }
    }
    (usable, skipped)
}

/// One sentinel's answer to a discovery round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The sentinel asked.
    pub sentinel: String,
    /// `SENTINEL GET-MASTER-ADDR-BY-NAME`: where it says the primary is
    /// (None: it does not know the master name).
    pub master: Option<String>,
    /// The master's `config-epoch` (`SENTINEL MASTER`); it grows with every
    /// failover, so the highest one is the newest configuration.
    pub epoch: u64,
    /// `SENTINEL REPLICAS`.
    pub replicas: Vec<ReplicaInfo>,
}

/// What a discovery round means for the current primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep the current primary; `epoch` is the newest epoch that names it.
    Stay {
        /// The newest epoch naming the current primary.
        epoch: u64,
    },
    /// A newer configuration names another primary: switch if its ROLE
    /// confirms.
    Switch {
        /// The primary the newest configuration names.
        to: String,
        /// That configuration's epoch.
        epoch: u64,
    },
    /// Some sentinel names another primary, but not with a newer epoch
    /// than the one the current primary was confirmed at (a sentinel that
    /// has not heard of the last failover yet): switch only if the current
    /// primary no longer is one.
    SwitchIfCurrentLost {
        /// The primary that sentinel names.
        to: String,
        /// Its epoch.
        epoch: u64,
    },
    /// No sentinel knows the master.
    Unknown,
}

/// Believes the newest configuration: the highest epoch wins, and among
/// answers with that epoch the current primary wins, else the most common
/// address. `current_epoch` is the epoch at which the current primary was
/// last confirmed (None: adopted from an event, epoch not yet known).
pub fn decide(views: &[View], current: &str, current_epoch: Option<u64>) -> Decision {
    let answers: Vec<(&str, u64)> = views
        .iter()
        .filter_map(|v| v.master.as_deref().map(|m| (m, v.epoch)))
        .collect();
    let Some(best) = answers.iter().map(|(_, e)| *e).max() else {
        return Decision::Unknown;
    };
    let newest: Vec<&str> = answers
        .iter()
        .filter(|(_, e)| *e == best)
        .map(|(a, _)| *a)
        .collect();
    if newest.contains(&current) {
        return Decision::Stay { epoch: best };
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for a in &newest {
        match counts.iter_mut().find(|(x, _)| x == a) {
            Some((_, n)) => *n += 1,
            None => counts.push((a, 1)),
        }
    }
    let to = counts
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(a, _)| a.to_string())
        .unwrap_or_default();
    match current_epoch {
        Some(e) if best > e => Decision::Switch { to, epoch: best },
        _ => Decision::SwitchIfCurrentLost { to, epoch: best },
    }
}

/// The stale `+switch-master` guard: a switch goes ahead only when the
/// server named as the new primary says, itself, that it is one. A
/// restarted sentinel may republish an old switch naming a server that has
/// since become a replica again; its ROLE gives it away.
pub fn confirm_switch(candidate_role: Option<&Role>) -> Result<(), String> {
    match candidate_role {
        Some(Role::Master { .. }) => Ok(()),
        Some(Role::Replica { master, .. }) => Err(format!("it is a replica of {master}")),
        Some(Role::Other(kind)) => Err(format!("its role is {kind}")),
        None => Err("it did not answer ROLE".to_string()),
    }
}

/// A Sentinel event that concerns the followed master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `+switch-master`: the sentinel now names `to` as the primary.
    SwitchMaster {
        /// The new primary.
        to: String,
    },
    /// `+promoted-slave`: the failover leader promoted `addr`; it already
    /// reports itself as a primary.
    Promoted {
        /// The promoted replica.
        addr: String,
    },
    /// `+failover-state-wait-promotion`: the failover leader sent
    /// `REPLICAOF NO ONE` to `addr` and waits (up to a second, its INFO
    /// period) to see it report itself a primary. strata asks `addr`
    /// itself meanwhile, and so learns of the promotion sooner.
    PromotionSent {
        /// The replica being promoted.
        addr: String,
    },
    /// `+try-failover`: this sentinel starts a failover.
    FailoverStarted,
    /// `-failover-abort-*` or `+failover-end*`: this sentinel's failover is over.
    FailoverOver,
    /// Replicas came or went, or changed state: worth a refresh.
    ReplicasChanged,
}

/// The channels strata subscribes to on every sentinel.
pub const CHANNELS: &[&str] = &[
    "+switch-master",
    "+promoted-slave",
    "+failover-state-wait-promotion",
    "+try-failover",
    "+failover-end",
    "+failover-end-for-timeout",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "+slave",
    "+sdown",
    "-sdown",
    "+convert-to-slave",
    "+slave-reconf-done",
];

/// Decodes a Sentinel event message for `master_name` (None: another
/// master's, or not an event strata acts on).
///
/// Payloads: `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>`;
/// for instances, `<type> <name> <ip> <port>` followed, for replicas and
/// sentinels, by `@ <master-name> <master-ip> <master-port>`.
pub fn parse_event(channel: &str, payload: &str, master_name: &str) -> Option<Event> {
    let words: Vec<&str> = payload.split_whitespace().collect();
    let port = |s: &str| s.parse::<i64>().ok();
    if channel == "+switch-master" {
        return match words.as_slice() {
            [name, _, _, ip, p, ..] if *name == master_name => Some(Event::SwitchMaster {
                to: join_addr(ip, port(p)?),
            }),
            _ => None,
        };
    }
    // Which master the instance event is about.
    let about = match words.as_slice() {
        ["master", name, ..] => *name,
        [_, _, _, _, "@", name, ..] => *name,
        _ => return None,
    };
    if about != master_name {
        return None;
    }
    match channel {
        "+promoted-slave" => match words.as_slice() {
            [_, _, ip, p, ..] => Some(Event::Promoted {
                addr: join_addr(ip, port(p)?),
            }),
            _ => None,
        },
        "+failover-state-wait-promotion" => match words.as_slice() {
            [_, _, ip, p, ..] => Some(Event::PromotionSent {
                addr: join_addr(ip, port(p)?),
            }),
            _ => None,
        },
        "+try-failover" => Some(Event::FailoverStarted),
        "+failover-end" | "+failover-end-for-timeout" => Some(Event::FailoverOver),
        c if c.starts_with("-failover-abort") => Some(Event::FailoverOver),
        "+slave" | "+sdown" | "-sdown" | "+convert-to-slave" | "+slave-reconf-done" => {
            // A sentinel's own sdown says nothing about the data path.
            (words.first() != Some(&"sentinel")).then_some(Event::ReplicasChanged)
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn view(sentinel: &str, master: Option<&str>, epoch: u64) -> View {
        View {
            sentinel: sentinel.into(),
            master: master.map(Into::into),
            epoch,
            replicas: Vec::new(),
        }
    }

    fn s(x: &str) -> Value {
        Value::Str(x.as_bytes().to_vec())
    }

    #[test]
    fn role_parsing() {
        let master = Value::Array(vec![
            s("master"),
            Value::Int(100),
            Value::Array(vec![Value::Array(vec![s("10.0.0.2"), s("6380"), s("90")])]),
        ]);
        assert_eq!(
            Role::parse(&master),
            Some(Role::Master {
                offset: 100,
                replicas: vec![("10.0.0.2:6380".into(), 90)]
            })
        );
        let replica = Value::Array(vec![
            s("slave"),
            s("10.0.0.1"),
            Value::Int(6379),
            s("connected"),
            Value::Int(5),
        ]);
        assert_eq!(
            Role::parse(&replica),
            Some(Role::Replica {
                master: "10.0.0.1:6379".into(),
                state: "connected".into()
            })
        );
        let sentinel = Value::Array(vec![s("sentinel"), Value::Array(vec![s("mymaster")])]);
        assert_eq!(Role::parse(&sentinel), Some(Role::Other("sentinel".into())));
        assert_eq!(join_addr("::1", 6379), "[::1]:6379");
    }

    #[test]
    fn stale_switch_is_refused_unless_the_target_is_a_primary() {
        let replica = Role::Replica {
            master: "10.0.0.1:6379".into(),
            state: "connected".into(),
        };
        let err = confirm_switch(Some(&replica)).unwrap_err();
        assert!(err.contains("replica of 10.0.0.1:6379"), "{err}");
        assert!(confirm_switch(None).is_err());
        assert!(confirm_switch(Some(&Role::Other("sentinel".into()))).is_err());
        let master = Role::Master {
            offset: 1,
            replicas: vec![],
        };
        assert!(confirm_switch(Some(&master)).is_ok());
    }

    #[test]
    fn newest_epoch_wins() {
        // One sentinel has seen the failover (epoch 2), two have not yet.
        let views = [
            view("s1", Some("a:1"), 1),
            view("s2", Some("b:1"), 2),
            view("s3", Some("a:1"), 1),
        ];
        assert_eq!(
            decide(&views, "a:1", Some(1)),
            Decision::Switch {
                to: "b:1".into(),
                epoch: 2
            }
        );
        // Already on b: the laggards do not pull strata back.
        assert_eq!(decide(&views, "b:1", Some(2)), Decision::Stay { epoch: 2 });
        // Adopted b from an event (epoch unknown), and only laggards answer:
        // go back only if b is no longer a primary.
        let laggards = [view("s1", Some("a:1"), 1), view("s3", Some("a:1"), 1)];
        assert_eq!(
            decide(&laggards, "b:1", None),
            Decision::SwitchIfCurrentLost {
                to: "a:1".into(),
                epoch: 1
            }
        );
        assert_eq!(
            decide(&laggards, "b:1", Some(2)),
            Decision::SwitchIfCurrentLost {
                to: "a:1".into(),
                epoch: 1
            }
        );
        assert_eq!(
            decide(&[view("s1", None, 0)], "a:1", Some(0)),
            Decision::Unknown
        );
        assert_eq!(decide(&[], "a:1", Some(0)), Decision::Unknown);
        // Same epoch, different answers: the most common one.
        let split = [
            view("s1", Some("c:1"), 3),
            view("s2", Some("b:1"), 3),
            view("s3", Some("b:1"), 3),
        ];
        assert_eq!(
            decide(&split, "a:1", Some(1)),
            Decision::Switch {
                to: "b:1".into(),
                epoch: 3
            }
        );
    }

    fn replica(addr: &str, flags: &str, link: &str) -> ReplicaInfo {
        ReplicaInfo {
            addr: addr.into(),
            flags: flags.into(),
            link_status: link.into(),
            offset: 0,
        }
    }

    #[test]
    fn replica_filter() {
        let infos = [
            replica("r1:1", "slave", "ok"),
            replica("r2:1", "s_down,slave,disconnected", "err"),
            replica("r3:1", "slave", "err"),
            replica("r4:1", "slave,disconnected", "ok"),
            replica("r5:1", "slave", "ok"),
            replica("p:1", "slave", "ok"),
            replica("r6:1", "slave", "ok"),
        ];
        let role = Role::Master {
            offset: 10_000,
            replicas: vec![("r1:1".into(), 9_990), ("r5:1".into(), 1_000)],
        };
        let (usable, skipped) = usable_replicas(&infos, "p:1", Some(&role), 100);
        assert_eq!(usable, vec!["r1:1".to_string()]);
        let reasons: Vec<String> = skipped.iter().map(|(a, r)| format!("{a} {r}")).collect();
        assert_eq!(
            reasons,
            vec![
                "r2:1 down",
                "r3:1 master link not ok",
                "r4:1 disconnected",
                "r5:1 9000 bytes behind",
                "r6:1 not connected to the primary"
            ]
        );
        // No bound, no ROLE: only the sentinel's flags count.
        let (usable, _) = usable_replicas(&infos, "p:1", None, 0);
        assert_eq!(
            usable,
            vec!["r1:1".to_string(), "r5:1".to_string(), "r6:1".to_string()]
        );
    }

    #[test]
    fn replica_info_parsing() {
        let v = Value::Array(
            [
                "name",
                "127.0.0.1:7001",
                "ip",
                "127.0.0.1",
                "port",
                "7001",
                "flags",
                "s_down,slave",
                "master-link-status",
                "err",
                "slave-repl-offset",
                "42",
            ]
            .iter()
            .map(|x| s(x))
            .collect(),
        );
        let info = ReplicaInfo::parse(&v).unwrap();
        assert_eq!(info.addr, "127.0.0.1:7001");
        assert_eq!(info.offset, 42);
        assert_eq!(info.unusable(), Some("down"));
    }

    #[test]
    fn events() {
        let m = "mymaster";
        assert_eq!(
            parse_event(
                "+switch-master",
                "mymaster 127.0.0.1 7000 127.0.0.1 7002",
                m
            ),
            Some(Event::SwitchMaster {
                to: "127.0.0.1:7002".into()
            })
        );
        assert_eq!(
            parse_event("+switch-master", "other 127.0.0.1 7000 127.0.0.1 7002", m),
            None
        );
        assert_eq!(
            parse_event(
                "+promoted-slave",
                "slave 127.0.0.1:7002 127.0.0.1 7002 @ mymaster 127.0.0.1 7000",
                m
            ),
            Some(Event::Promoted {
                addr: "127.0.0.1:7002".into()
            })
        );
        assert_eq!(
            parse_event("+try-failover", "master mymaster 127.0.0.1 7000", m),
            Some(Event::FailoverStarted)
        );
        assert_eq!(
            parse_event(
                "+failover-state-wait-promotion",
                "slave 127.0.0.1:7002 127.0.0.1 7002 @ mymaster 127.0.0.1 7000",
                m
            ),
            Some(Event::PromotionSent {
                addr: "127.0.0.1:7002".into()
            })
        );
        assert_eq!(
            parse_event("+try-failover", "master other 127.0.0.1 7000", m),
            None
        );
        assert_eq!(
            parse_event(
                "-failover-abort-no-good-slave",
                "master mymaster 127.0.0.1 7000",
                m
            ),
            Some(Event::FailoverOver)
        );
        assert_eq!(
            parse_event(
                "+sdown",
                "slave 127.0.0.1:7001 127.0.0.1 7001 @ mymaster 127.0.0.1 7000",
                m
            ),
            Some(Event::ReplicasChanged)
        );
        assert_eq!(
            parse_event(
                "+sdown",
                "sentinel abc 127.0.0.1 26379 @ mymaster 127.0.0.1 7000",
                m
            ),
            None
        );
        assert_eq!(parse_event("+sdown", "garbage", m), None);
    }
}
