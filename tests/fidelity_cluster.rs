//! Fidelity in cluster mode: a client of strata in front of a real Redis
//! Cluster (3 primaries, 3 replicas) sees what it would see talking to ONE
//! redis-server in cluster mode that owns all 16384 slots
//! (`support::redis_server::one_node_cluster`). Each test replays the same
//! byte exchange against both and asserts the same replies, then checks on
//! the real nodes that the command reached each of them.
//!
//! Server-level commands (CONFIG SET/GET/RESETSTAT, SCRIPT EXISTS,
//! RANDOMKEY, INFO's counters) and pub/sub counts (PUBLISH, PUBSUB) are
//! covered here. One cluster serves every test of this binary
//! (`cluster::shared()`), held for each test's whole body.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use strata::command::slot::hash_slot;
use support::clients::{show, RawConn};
use support::cluster;
use support::cluster_strata::{blocking, fresh};
use support::redis_server::one_node_cluster;
use support::sentinel::{info_field, Resp};

/// A connection to the reference (one Redis owning every slot) and one to
/// strata, driven in lockstep.
struct Pair {
    reference: RawConn,
    strata: RawConn,
}

impl Pair {
    async fn connect(reference: &str, strata: &str) -> Pair {
        Pair {
            reference: RawConn::connect(reference).await,
            strata: RawConn::connect(strata).await,
        }
    }

    /// Sends `words` to both; returns both replies.
    async fn both(&mut self, words: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        let r = self.reference.call(&args).await;
        let s = self.strata.call(&args).await;
        (r, s)
    }

    /// Sends `words` to both and asserts the same reply, which it returns.
    async fn same(&mut self, words: &[&str]) -> Vec<u8> {
        let (r, s) = self.both(words).await;
        assert_eq!(show(&s), show(&r), "strata vs one Redis for {words:?}");
        r
    }

    /// The next frame on both (a pub/sub message), asserted the same.
    async fn same_next(&mut self, what: &str) -> Vec<u8> {
        let r = self.reference.read_frame().await;
        let s = self.strata.read_frame().await;
        assert_eq!(show(&s), show(&r), "strata vs one Redis: {what}");
        r
    }
}

/// The text of an INFO reply frame.
fn info_text(frame: &[u8]) -> String {
    match Resp::parse(frame) {
        Resp::Str(s) => s,
        other => panic!("INFO: {other:?}"),
    }
}

/// An INFO field as an integer.
fn info_int(text: &str, field: &str) -> i64 {
    info_field(text, field)
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// `# Keyspace` without `avg_ttl` (an estimate that moves with time).
fn keyspace_counts(text: &str) -> String {
    text.lines()
        .map(|l| match l.find(",avg_ttl=") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// CONFIG SET reaches every node, replicas included, and CONFIG GET,
/// CONFIG RESETSTAT, SCRIPT EXISTS, RANDOMKEY and INFO's error, hit and
/// keyspace counters read as one Redis's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_commands_reach_every_node_and_merge_as_one_redis() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let reference = blocking(one_node_cluster);
    let mut p = Pair::connect(&reference.addr(), &strata.addr.to_string()).await;

    // CONFIG SET: every node, replicas included; CONFIG GET reads it back.
    p.same(&["CONFIG", "SET", "maxmemory-samples", "7"]).await;
    p.same(&["CONFIG", "GET", "maxmemory-samples"]).await;
    p.same(&["CONFIG", "SET", "maxmemory-samples", "many"])
        .await;
    let nodes = c.addrs();
    assert_eq!(nodes.len(), 6);
    for node in &nodes {
        assert_eq!(
            blocking(|| c.must(node, &["CONFIG", "GET", "maxmemory-samples"])),
            Resp::Array(vec![
                Resp::Str("maxmemory-samples".into()),
                Resp::Str("7".into())
            ]),
            "CONFIG SET through strata reached {node}"
        );
    }

    // SCRIPT LOAD goes to every primary; EXISTS is 1 where all have it.
    let sha = match Resp::parse(&p.same(&["SCRIPT", "LOAD", "return 1"]).await) {
        Resp::Str(sha) => sha,
        other => panic!("SCRIPT LOAD: {other:?}"),
    };
    let missing = "0000000000000000000000000000000000000000";
    p.same(&["SCRIPT", "EXISTS", &sha, missing]).await;

    // FUNCTION RESTORE reaches every primary: the library then runs on
    // keys of every node.
    let lib = "#!lua name=fidlib\nredis.register_function('fidget', function(keys) return redis.call('GET', keys[1]) end)";
    p.same(&["FUNCTION", "LOAD", lib]).await;
    // The payload is binary: taken from the bulk string's bytes.
    let frame = p.same(&["FUNCTION", "DUMP"]).await;
    let start = frame.iter().position(|b| *b == b'\n').unwrap() + 1;
    let dump = frame[start..frame.len() - 2].to_vec();
    p.same(&["FUNCTION", "FLUSH"]).await;
    let dump_args: [&[u8]; 3] = [b"FUNCTION", b"RESTORE", &dump];
    let r = p.reference.call(&dump_args).await;
    let s = p.strata.call(&dump_args).await;
    assert_eq!(show(&s), show(&r), "FUNCTION RESTORE");
    assert_eq!(show(&r), "+OK\\r\\n");
    for primary in place.primaries() {
        let k = place.key_on(&primary, "fk:");
        p.same(&["SET", &k, "restored"]).await;
        assert_eq!(
            show(&p.same(&["FCALL", "fidget", "1", &k]).await),
            "$8\\r\\nrestored\\r\\n"
        );
        p.same(&["DEL", &k]).await;
    }
    p.same(&["FUNCTION", "DELETE", "fidlib"]).await;

    // RANDOMKEY: nil while empty, then the one key, wherever it lives.
    p.same(&["RANDOMKEY"]).await;
    let primaries = place.primaries();
    for primary in &primaries {
        let lone = place.key_on(primary, "lone:");
        p.same(&["SET", &lone, "v"]).await;
        for _ in 0..5 {
            p.same(&["RANDOMKEY"]).await;
        }
        p.same(&["DEL", &lone]).await;
    }

    // Counters: reset everywhere, then the same traffic on both.
    p.same(&["CONFIG", "RESETSTAT"]).await;
    let before = |text: &str| info_int(text, "rdb_changes_since_last_save");
    let (r, s) = p.both(&["INFO", "persistence"]).await;
    let (r_dirty, s_dirty) = (before(&info_text(&r)), before(&info_text(&s)));
    let keys: Vec<(String, String)> = place.key_per_primary("str:");
    for (_, k) in &keys {
        p.same(&["SET", k, "not-a-number"]).await;
        p.same(&["INCR", k]).await; // ERR, on each primary
        p.same(&["LPUSH", k, "x"]).await; // WRONGTYPE
        p.same(&["GET", k]).await; // a hit
        p.same(&["GET", &format!("{k}:missing")]).await; // a miss
        p.same(&["SET", &format!("{k}:ttl"), "v", "EX", "1000"])
            .await;
    }
    p.same(&["EVALSHA", missing, "0"]).await; // NOSCRIPT
    p.same(&["NO-SUCH-COMMAND", "x"]).await; // ERR unknown command
    p.same(&["INFO", "errorstats"]).await;
    let (r, s) = p.both(&["INFO", "stats"]).await;
    let (r, s) = (info_text(&r), info_text(&s));
    for field in ["total_error_replies", "keyspace_hits", "keyspace_misses"] {
        assert_eq!(
            info_int(&s, field),
            info_int(&r, field),
            "{field}: strata {s} vs one Redis {r}"
        );
    }
    let (r, s) = p.both(&["INFO", "persistence"]).await;
    assert_eq!(
        before(&info_text(&s)) - s_dirty,
        before(&info_text(&r)) - r_dirty,
        "rdb_changes_since_last_save grew as on one Redis"
    );
    let (r, s) = p.both(&["INFO", "keyspace"]).await;
    assert_eq!(
        keyspace_counts(&info_text(&s)),
        keyspace_counts(&info_text(&r))
    );

    // Back to the default, everywhere.
    p.same(&["CONFIG", "SET", "maxmemory-samples", "5"]).await;
    for node in &nodes {
        assert_eq!(
            blocking(|| c.must(node, &["CONFIG", "GET", "maxmemory-samples"])).items()[1],
            Resp::Str("5".into()),
            "{node}"
        );
    }
}

/// Every subscriber strata has is counted by PUBLISH and PUBSUB, wherever
/// the channel's name hashes, as one Redis counts its subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_counts_every_subscriber_as_one_redis() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let reference = blocking(one_node_cluster);
    let (r, s) = (reference.addr(), strata.addr.to_string());
    // Channels whose names hash to slots of different primaries.
    let channels: Vec<String> = place
        .key_per_primary("fid-news:")
        .into_iter()
        .map(|(_, ch)| ch)
        .collect();
    // One subscriber per channel, one on a pattern and one on two channels
    // and a pattern: separate clients, as an application has.
    let mut subs = Vec::new();
    for ch in &channels {
        let mut sub = Pair::connect(&r, &s).await;
        sub.same(&["SUBSCRIBE", ch]).await;
        subs.push(sub);
    }
    let mut psub = Pair::connect(&r, &s).await;
    psub.same(&["PSUBSCRIBE", "fid-news:*"]).await;
    let mut both = Pair::connect(&r, &s).await;
    both.same(&["SUBSCRIBE", &channels[0], &channels[2]]).await;
    both.same_next("the second SUBSCRIBE confirmation").await;
    both.same(&["PSUBSCRIBE", "fid-*"]).await;

    // Publishers on several connections (strata spreads clients over
    // nodes by client id).
    for round in 0..3 {
        let mut publisher = Pair::connect(&r, &s).await;
        for ch in &channels {
            let payload = format!("m{round}");
            publisher.same(&["PUBLISH", ch, &payload]).await;
        }
        publisher.same(&["PUBLISH", "fid-other", "x"]).await;
        publisher.same(&["PUBLISH", "nobody", "x"]).await;
        publisher.same(&["PUBSUB", "NUMPAT"]).await;
        let mut numsub = vec!["PUBSUB", "NUMSUB"];
        numsub.extend(channels.iter().map(String::as_str));
        numsub.push("nobody");
        publisher.same(&numsub).await;
        // CHANNELS lists in no particular order: compare as sets.
        let (r, s) = publisher.both(&["PUBSUB", "CHANNELS", "fid-*"]).await;
        let set = |f: &[u8]| -> BTreeSet<String> {
            Resp::parse(f)
                .items()
                .iter()
                .map(|i| format!("{i:?}"))
                .collect()
        };
        assert_eq!(set(&s), set(&r), "PUBSUB CHANNELS");
    }
    // Every message reached its subscribers, as on one Redis.
    for round in 0..3 {
        for (i, sub) in subs.iter_mut().enumerate() {
            sub.same_next(&format!("round {round} on channel {i}"))
                .await;
        }
        for i in 0..channels.len() {
            psub.same_next(&format!("round {round}, pattern, {i}"))
                .await;
        }
        for i in 0..channels.len() {
            both.same_next(&format!("round {round}, two channels, {i}"))
                .await;
            if i != 1 {
                both.same_next(&format!("round {round}, and the pattern, {i}"))
                    .await;
            }
        }
        both.same_next(&format!("round {round}, fid-other")).await;
    }
    for sub in subs.iter_mut().chain([&mut psub, &mut both]) {
        sub.strata.expect_silence(Duration::from_millis(200)).await;
    }
}

/// PUBLISH keeps counting strata's subscribers when slot 0 (whose primary
/// is strata's pub/sub node) moves to another primary and back: the
/// subscribers follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_counts_hold_while_slot_zero_moves() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let addr = strata.addr.to_string();
    let mut sub = RawConn::connect(&addr).await;
    let mut psub = RawConn::connect(&addr).await;
    assert_eq!(
        show(&sub.cmd("SUBSCRIBE moving-news").await),
        show(b"*3\r\n$9\r\nsubscribe\r\n$11\r\nmoving-news\r\n:1\r\n")
    );
    assert_eq!(
        show(&psub.cmd("PSUBSCRIBE moving-*").await),
        show(b"*3\r\n$10\r\npsubscribe\r\n$8\r\nmoving-*\r\n:1\r\n")
    );
    let home = place.owner_of_slot(0).to_string();
    let other = place.primaries().into_iter().find(|p| *p != home).unwrap();
    let mut publisher = RawConn::connect(&addr).await;
    // A key in slot 0: reading it through strata after the move gets a
    // MOVED, so strata's view follows at once (PUBLISH has no key).
    let in_slot_0 = (0..)
        .map(|i| format!("slot0-{i}"))
        .find(|k| hash_slot(k.as_bytes()) == 0)
        .unwrap();
    for (to, round) in [(&other, "moved"), (&home, "back")] {
        blocking(|| c.migrate_slot(0, to));
        assert_eq!(publisher.cmd(&format!("GET {in_slot_0}")).await, b"$-1\r\n");
        // The subscriptions move to the new owner of slot 0, and leave
        // the old one.
        let from = if to == &other { &home } else { &other };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let numsub = |node: &str| {
                blocking(|| c.must(node, &["PUBSUB", "NUMSUB", "moving-news"])).items()[1].clone()
            };
            let numpat = |node: &str| blocking(|| c.must(node, &["PUBSUB", "NUMPAT"]));
            if numsub(to) == Resp::Int(1)
                && numpat(to) == Resp::Int(1)
                && numsub(from) == Resp::Int(0)
                && numpat(from) == Resp::Int(0)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "subscriptions not moved from {from} to {to}"
            );
            publisher.cmd(&format!("GET {in_slot_0}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let count = publisher
            .call(&[b"PUBLISH", b"moving-news", round.as_bytes()])
            .await;
        assert_eq!(show(&count), show(b":2\r\n"), "after slot 0 moved to {to}");
        let message = format!(
            "*3\r\n$7\r\nmessage\r\n$11\r\nmoving-news\r\n${}\r\n{round}\r\n",
            round.len()
        );
        assert_eq!(show(&sub.read_frame().await), show(message.as_bytes()));
        let pmessage = format!(
            "*4\r\n$8\r\npmessage\r\n$8\r\nmoving-*\r\n$11\r\nmoving-news\r\n${}\r\n{round}\r\n",
            round.len()
        );
        assert_eq!(show(&psub.read_frame().await), show(pmessage.as_bytes()));
    }
    // Each message came once.
    sub.expect_silence(Duration::from_millis(200)).await;
    psub.expect_silence(Duration::from_millis(200)).await;
}

/// The channel and count of a `[kind, channel, count]` confirmation.
fn channel_and_count(frame: &[u8]) -> (String, i64) {
    match Resp::parse(frame).items() {
        [_, Resp::Str(ch), Resp::Int(n)] => (ch.clone(), *n),
        other => panic!("not a confirmation: {other:?}"),
    }
}

/// One connection SSUBSCRIBEs, command by command, to shard channels of
/// several slots on every primary: each command works as on one Redis
/// (counts over all of them, CROSSSLOT only within one command), SPUBLISH
/// counts the subscriber on the channel's node, and messages arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssubscribe_across_slots_and_nodes_works_as_on_one_redis() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let reference = blocking(one_node_cluster);
    let (r, s) = (reference.addr(), strata.addr.to_string());
    let mut sub = Pair::connect(&r, &s).await;
    let mut publisher = Pair::connect(&r, &s).await;
    let mut primaries = place.primaries();
    // The first channel on a primary other than slot 0's (strata's pub/sub
    // node), so the connection's plain subscriptions below live elsewhere.
    primaries.rotate_left(1);
    // Two channels (two slots) on every primary.
    let mut channels = Vec::new();
    for p in &primaries {
        let two = place.keys_on(p, "fid-shard:", 2);
        assert_ne!(hash_slot(two[0].as_bytes()), hash_slot(two[1].as_bytes()));
        channels.extend(two);
    }
    for ch in &channels {
        sub.same(&["SSUBSCRIBE", ch]).await;
    }
    let mut numsub = vec!["PUBSUB", "SHARDNUMSUB"];
    numsub.extend(channels.iter().map(String::as_str));
    numsub.push("fid-shard:never");
    publisher.same(&numsub).await;
    let (r_all, s_all) = publisher.both(&["PUBSUB", "SHARDCHANNELS", "fid-*"]).await;
    let set = |f: &[u8]| -> BTreeSet<String> {
        Resp::parse(f)
            .items()
            .iter()
            .map(|i| format!("{i:?}"))
            .collect()
    };
    assert_eq!(set(&s_all), set(&r_all), "PUBSUB SHARDCHANNELS");
    // Still one slot per command, as Redis Cluster says.
    sub.same(&["SSUBSCRIBE", &channels[1], &channels[2]]).await;
    sub.same(&["PING"]).await;
    for ch in &channels {
        publisher.same(&["SPUBLISH", ch, &format!("to-{ch}")]).await;
        sub.same_next(&format!("the message on {ch}")).await;
    }
    // Plain channels and patterns on the same connection: PUBLISH counts
    // them as one Redis does.
    sub.same(&["SUBSCRIBE", "fid-plain"]).await;
    sub.same(&["PSUBSCRIBE", "fid-pl*"]).await;
    publisher.same(&["PUBLISH", "fid-plain", "both"]).await;
    sub.same_next("the plain message").await;
    sub.same_next("the pattern message").await;
    sub.same(&["PING", "hi"]).await;
    sub.same(&["UNSUBSCRIBE"]).await;
    sub.same(&["PUNSUBSCRIBE", "fid-pl*"]).await;
    publisher.same(&["PUBLISH", "fid-plain", "nobody"]).await;
    // The connection's first channel gone, the others still subscribed.
    sub.same(&["SUNSUBSCRIBE", &channels[0]]).await;
    sub.same(&["PING"]).await;
    // Unsubscribing: one channel, one never subscribed, then the rest.
    sub.same(&["SUNSUBSCRIBE", &channels[3]]).await;
    sub.same(&["SUNSUBSCRIBE", "fid-shard:never"]).await;
    publisher.same(&["SPUBLISH", &channels[3], "gone"]).await;
    let (r_first, s_first) = sub.both(&["SUNSUBSCRIBE"]).await;
    let mut r_all = vec![channel_and_count(&r_first)];
    let mut s_all = vec![channel_and_count(&s_first)];
    for _ in 3..channels.len() {
        r_all.push(channel_and_count(&sub.reference.read_frame().await));
        s_all.push(channel_and_count(&sub.strata.read_frame().await));
    }
    // Redis lists them in its own dict order: compare the channels as a
    // set and the counts in order.
    let counts = |all: &[(String, i64)]| all.iter().map(|(_, n)| *n).collect::<Vec<_>>();
    let names = |all: &[(String, i64)]| all.iter().map(|(c, _)| c.clone()).collect::<BTreeSet<_>>();
    assert_eq!(counts(&s_all), counts(&r_all));
    assert_eq!(names(&s_all), names(&r_all));
    sub.same(&["PING"]).await;
    for ch in &channels {
        publisher.same(&["SPUBLISH", ch, "after"]).await;
    }
    sub.strata.expect_silence(Duration::from_millis(200)).await;
}

/// The same in RESP3: confirmations and messages are pushes, from every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssubscribe_across_nodes_in_resp3() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let reference = blocking(one_node_cluster);
    let (r, s) = (reference.addr(), strata.addr.to_string());
    let mut sub = Pair::connect(&r, &s).await;
    let mut publisher = Pair::connect(&r, &s).await;
    // HELLO's reply names the server: switched on both, not compared.
    sub.both(&["HELLO", "3"]).await;
    let channels: Vec<String> = place
        .key_per_primary("fid-push:")
        .into_iter()
        .rev()
        .map(|(_, ch)| ch)
        .collect();
    for ch in &channels {
        sub.same(&["SSUBSCRIBE", ch]).await;
    }
    sub.same(&["SUBSCRIBE", "fid-push-plain"]).await;
    for ch in &channels {
        publisher.same(&["SPUBLISH", ch, "pushed"]).await;
        sub.same_next(&format!("the push on {ch}")).await;
    }
    publisher
        .same(&["PUBLISH", "fid-push-plain", "plain"])
        .await;
    sub.same_next("the plain push").await;
    sub.same(&["PING"]).await;
    for ch in channels.iter().rev() {
        sub.same(&["SUNSUBSCRIBE", ch]).await;
    }
    sub.same(&["UNSUBSCRIBE", "fid-push-plain"]).await;
    sub.same(&["PING"]).await;
    // RESET leaves every subscription, on every node.
    for ch in &channels {
        sub.same(&["SSUBSCRIBE", ch]).await;
    }
    sub.same(&["RESET"]).await;
    sub.same(&["PING"]).await;
    for ch in &channels {
        publisher.same(&["SPUBLISH", ch, "after-reset"]).await;
    }
    sub.strata.expect_silence(Duration::from_millis(200)).await;
}
