//! strata in cluster mode through failures, under load from plain clients:
//! a primary SIGKILLed (and followed once its replica is promoted, timed),
//! a primary down for good (only its slots fail, with an error that names
//! it), a graceful `CLUSTER FAILOVER` (no acknowledged write lost), slots
//! migrated while clients use them (no errors at all), and subscriptions
//! carried across a killed node and a moved slot.
//!
//! This binary has its own cluster (`cluster::shared_repaired()`, held for
//! a whole test). Each test puts the cluster back as it found it: killed
//! nodes restarted, original primaries failed back, slots moved back,
//! config restored.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use strata::command::slot::hash_slot;
use support::clients::RawConn;
use support::cluster::{self, try_slots_view, Cluster};
use support::cluster_strata::{
    blocking, con, config_set_all, failover_healthy, fresh, raw, replica_no_failover, reset,
    restart_healthy, rs, s, start, subscribe, summarize, unreadable, within, Load, Placement,
    WriterLog,
};
use support::sentinel::{query, Resp};

/// Waits until `replica` is a primary as every live node sees it.
fn wait_promoted(c: &Cluster, replica: &str) {
    c.wait_until(Duration::from_secs(30), "replica promoted", |c| {
        for a in c.live_addrs() {
            if !try_slots_view(&a)?.iter().any(|(_, _, p, _)| p == replica) {
                return Err(format!("{a} does not see {replica} as a primary"));
            }
        }
        Ok(())
    });
}

/// One writer per primary, on one slot of it (a hash tag), named after it.
fn writers_per_primary(place: &Placement, name: &str, per: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, p) in place.primaries().iter().enumerate() {
        let tag = place.tag_on(p, &format!("{name}{i}"));
        for w in 0..per {
            out.push((format!("{p} {tag} w{w}"), format!("{tag}w{w}:")));
        }
    }
    out
}

fn acked(logs: &[WriterLog]) -> Vec<(String, String)> {
    logs.iter()
        .flat_map(|l| l.acked.iter().map(|(k, v, _)| (k.clone(), v.clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_primary_is_followed_once_its_replica_is_promoted() {
    let mut c = cluster::shared_repaired().await;
    // Without full coverage, the live primaries keep serving their slots
    // while one is down: what strata does for them is then visible.
    blocking(|| {
        reset(&c);
        config_set_all(&c, "cluster-require-full-coverage", "no");
    });
    let strata = start(&c).await;
    let place = Placement::of(&c);
    let victim = place.primaries()[0].clone();
    let replica = c.replica_of(&victim);
    let load = Load::start(strata.addr, &writers_per_primary(&place, "kill", 1), false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!((0..3).all(|i| load.oks(i) > 0), "writers running");

    let (killed, promoted) = blocking(|| {
        c.kill(&victim);
        // Once the process is gone: a request sent just before the kill
        // may still be answered, and would count as the slot served again.
        let killed = Instant::now();
        wait_promoted(&c, &replica);
        (killed, killed.elapsed())
    });
    let deadline = killed + Duration::from_secs(30);
    let first = loop {
        if let Some(t) = load.first_ok_sent_after(0, killed) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no write for {victim}'s slot through strata within 30 s of the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let logs = load.stop().await;
    let summary = summarize(&logs);
    eprintln!(
        "FAILOVER (SIGKILL) primary {victim}: cluster promoted {replica} {promoted:?} after the \
         kill; first acknowledged write through strata for that slot {:?} after the kill \
         ({:?} after the promotion was seen). {summary}",
        first - killed,
        first.saturating_duration_since(killed + promoted),
    );
    // The victim's slot: errors only while it was down, each naming it.
    for (at, e) in &logs[0].errors {
        assert!(*at <= first, "error after the slot was served again: {e}");
        assert!(e.contains(&victim), "error does not name {victim}: {e}");
    }
    // The other slots never noticed.
    for log in &logs[1..] {
        assert!(log.errors.is_empty(), "{summary}");
        assert!(log.oks_between(killed, first) > 0, "{summary}");
        assert!(log.longest_gap() < Duration::from_secs(2), "{summary}");
    }
    // Writes acknowledged once the replica took over are all there.
    let after: Vec<(String, String)> = logs
        .iter()
        .flat_map(|l| l.acked.iter().filter(|(_, _, t)| *t > first))
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    assert!(!after.is_empty());
    assert_eq!(unreadable(&c, &after).await, Vec::<String>::new());

    blocking(|| {
        restart_healthy(&mut c, &victim);
        failover_healthy(&c, &victim);
        config_set_all(&c, "cluster-require-full-coverage", "yes");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_primary_fails_only_its_slots_with_an_error_naming_it() {
    let mut c = cluster::shared_repaired().await;
    let place = Placement::of(&c);
    let victim = place.primaries()[1].clone();
    let replica = c.replica_of(&victim);
    blocking(|| {
        reset(&c);
        config_set_all(&c, "cluster-require-full-coverage", "no");
        replica_no_failover(&c, &replica, "yes");
    });
    let strata = start(&c).await;
    let keys = place.key_per_primary("down:");
    let mut con = con(strata.addr).await;
    for (_, k) in &keys {
        let _: () = rs(&mut con, &["SET", k, "v"]).await;
    }
    let down_key = keys[1].1.clone();
    let (up1, up2) = (keys[0].1.clone(), keys[2].1.clone());
    blocking(|| c.kill(&victim));
    let killed = Instant::now();

    // The live slots, on their own connection: always served, promptly.
    let mut live = con.clone();
    let others = tokio::spawn(async move {
        let mut n = 0;
        while killed.elapsed() < Duration::from_secs(6) {
            let t = Instant::now();
            let v: Vec<String> = rs(&mut live, &["MGET", &up1, &up2]).await;
            assert_eq!(v, ["v", "v"]);
            let _: () = rs(&mut live, &["SET", &up1, "v"]).await;
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n
    });
    // The dead one's slots: an error naming it, in bounded time, again and
    // again (before and after the cluster marks it failed).
    let mut dead = support::cluster_strata::con(strata.addr).await;
    let mut errors = Vec::new();
    while killed.elapsed() < Duration::from_secs(6) {
        for words in [
            vec!["GET", down_key.as_str()],
            vec!["SET", down_key.as_str(), "x"],
            vec!["MGET", keys[0].1.as_str(), down_key.as_str()],
        ] {
            let t = Instant::now();
            let e = support::cluster_strata::rs_err(&mut dead, &words).await;
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{words:?} took {:?}",
                t.elapsed()
            );
            assert!(
                e.contains(&victim),
                "{words:?}: error does not name {victim}: {e}"
            );
            errors.push(e);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let served = within("live slots", others).await.expect("live slots task");
    assert!(served > 20, "{served} rounds on the live slots");
    eprintln!(
        "node down: {} errors, e.g. {:?}",
        errors.len(),
        errors.last()
    );

    // Back (empty: persistence is off), and served again without a restart of strata.
    blocking(|| restart_healthy(&mut c, &victim));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r: redis::RedisResult<()> = within(
            "SET",
            redis::cmd("SET")
                .arg(&down_key)
                .arg("back")
                .query_async(&mut dead),
        )
        .await;
        if r.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{victim} never served again: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.must(&victim, &["GET", &down_key]), s("back"));
    blocking(|| {
        replica_no_failover(&c, &replica, "no");
        config_set_all(&c, "cluster-require-full-coverage", "yes");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clusterdown_is_retried_then_reported_and_strata_recovers_with_the_cluster() {
    let mut c = cluster::shared_repaired().await;
    let place = Placement::of(&c);
    let victim = place.primaries()[2].clone();
    let replica = c.replica_of(&victim);
    blocking(|| {
        reset(&c);
        replica_no_failover(&c, &replica, "yes");
    });
    let strata = start(&c).await;
    let live = place.key_on(&place.primaries()[0], "cd:");
    let mut r = RawConn::connect(&strata.addr.to_string()).await;
    r.expect(&format!("SET {live} v"), b"+OK\r\n").await;
    // Full coverage (the default): with a primary down and not replaced,
    // every node answers CLUSTERDOWN, for every slot.
    blocking(|| {
        c.kill(&victim);
        c.wait_until(Duration::from_secs(30), "cluster_state:fail", |c| {
            match c.cluster_state(&place.primaries()[0])?.as_str() {
                "fail" => Ok(()),
                s => Err(format!("cluster_state:{s}")),
            }
        })
    });
    let t = Instant::now();
    match raw(&mut r, &["GET", &live]).await {
        Resp::Err(e) => assert!(e.contains("CLUSTERDOWN"), "{e}"),
        other => panic!("GET while the cluster is down: {other:?}"),
    }
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    eprintln!("CLUSTERDOWN reported after {took:?} of retries");
    // The node comes back: the same connection is served again.
    blocking(|| {
        restart_healthy(&mut c, &victim);
        replica_no_failover(&c, &replica, "no");
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match raw(&mut r, &["GET", &live]).await {
            Resp::Str(v) if v == "v" => break,
            other => assert!(Instant::now() < deadline, "after recovery: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SPUBLISHes on `node` every 200 ms until `sub` gets the message; every
/// frame it gets must be that `smessage`.
async fn spublish_until_received(sub: &mut RawConn, node: &str, ch: &str, payload: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let _ = blocking(|| query(node, &["SPUBLISH", ch, payload]));
        if let Some(f) = sub.read_frame_within(Duration::from_millis(200)).await {
            let msg = Resp::parse(&f);
            let want = Resp::Array(vec![s("smessage"), s(ch), s(payload)]);
            assert_eq!(msg, want, "shard subscriber got something else");
            while let Some(f) = sub.read_frame_within(Duration::from_millis(100)).await {
                assert_eq!(Resp::parse(&f), want, "shard subscriber got something else");
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "SPUBLISH {ch} on {node} never reached the subscriber through strata"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_failover_under_load_loses_no_acknowledged_write() {
    let c = cluster::shared_repaired().await;
    let (strata, place) = fresh(&c).await;
    let primary = place.primaries()[2].clone();
    let replica = c.replica_of(&primary);
    let ch = place.key_on(&primary, "gf-channel:");
    let mut sub = RawConn::connect(&strata.addr.to_string()).await;
    subscribe(&mut sub, "SSUBSCRIBE", &ch).await;
    let load = Load::start(strata.addr, &writers_per_primary(&place, "gf", 2), true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut took = Vec::new();
    for (to, from) in [(&replica, &primary), (&primary, &replica)] {
        let t = Instant::now();
        blocking(|| c.failover(to, None));
        took.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(800)).await;
        // The shard subscription followed the slot to its new primary.
        spublish_until_received(&mut sub, to, &ch, &format!("after-failover-to-{to}")).await;
        assert_eq!(
            c.primary_for_slot(hash_slot(ch.as_bytes())),
            *to,
            "from {from}"
        );
    }
    let logs = load.stop().await;
    let summary = summarize(&logs);
    let gap = logs[4..].iter().map(WriterLog::longest_gap).max().unwrap();
    eprintln!(
        "FAILOVER (graceful CLUSTER FAILOVER) {primary} -> {replica} -> {primary}: took {took:?}; \
         longest pause seen by a writer of that shard {gap:?}. {summary}"
    );
    // Lost writes first: they matter most, and an error below would hide them.
    let all = acked(&logs);
    assert!(all.len() > 300, "{summary}");
    let lost = unreadable(&c, &all).await;
    eprintln!(
        "graceful failover: {} of {} acknowledged writes lost",
        lost.len(),
        all.len()
    );
    assert_eq!(lost, Vec::<String>::new(), "{summary}");
    let errors: usize = logs.iter().map(|l| l.errors.len()).sum();
    assert_eq!(errors, 0, "{summary}");
}

/// Moves `slot` from `from` to `to` the way a resharding does, a few keys
/// at a time, while clients keep going.
fn reshard_slowly(c: &Cluster, slot: u16, from: &str, to: &str) -> usize {
    c.begin_migration(slot, from, to);
    let mut moved = 0;
    loop {
        let keys = c.must(from, &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "25"]);
        let keys: Vec<&str> = keys.items().iter().filter_map(|k| k.str()).collect();
        if keys.is_empty() {
            break;
        }
        c.migrate_keys(from, to, &keys);
        moved += keys.len();
        std::thread::sleep(Duration::from_millis(5));
    }
    c.finish_migration(slot, from, to);
    moved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slot_migration_under_load_gives_clients_no_error_and_loses_nothing() {
    let c = cluster::shared_repaired().await;
    let (strata, place) = fresh(&c).await;
    let prims = place.primaries();
    let writers = writers_per_primary(&place, "mig", 2);
    // Keys there before the move, in every moving slot.
    let mut con = con(strata.addr).await;
    let mut pre = Vec::new();
    let mut moves = Vec::new();
    for (i, (_, prefix)) in writers.iter().enumerate().step_by(2) {
        let tag = &prefix[..prefix.find('}').unwrap() + 1];
        let mut mset = vec!["MSET".to_string()];
        for n in 0..300 {
            let (k, v) = (format!("{tag}pre:{n}"), format!("p{n}"));
            mset.extend([k.clone(), v.clone()]);
            pre.push((k, v));
        }
        let words: Vec<&str> = mset.iter().map(String::as_str).collect();
        let _: () = rs(&mut con, &words).await;
        let from = prims[i / 2].clone();
        moves.push((
            hash_slot(tag.as_bytes()),
            from,
            prims[(i / 2 + 1) % 3].clone(),
        ));
    }
    let load = Load::start(strata.addr, &writers, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut keys_moved = 0;
    for back in [false, true] {
        for (slot, from, to) in &moves {
            let (from, to) = if back { (to, from) } else { (from, to) };
            keys_moved += blocking(|| reshard_slowly(&c, *slot, from, to));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Reads of the keys that were there before, through strata.
        for chunk in pre.chunks(150) {
            let mut mget = vec!["MGET"];
            mget.extend(chunk.iter().map(|(k, _)| k.as_str()));
            let got: Vec<String> = rs(&mut con, &mget).await;
            let want: Vec<String> = chunk.iter().map(|(_, v)| v.clone()).collect();
            assert_eq!(got, want);
        }
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = load.stop().await;
    let summary = summarize(&logs);
    eprintln!(
        "MIGRATION under load: 3 slots moved and back ({keys_moved} keys MIGRATEd) in {took:?}. \
         {summary}"
    );
    let errors: usize = logs.iter().map(|l| l.errors.len()).sum();
    assert_eq!(errors, 0, "{summary}");
    for (slot, from, _) in &moves {
        assert_eq!(&c.primary_for_slot(*slot), from);
    }
    let mut all = acked(&logs);
    assert!(all.len() > 300, "{summary}");
    all.extend(pre);
    assert_eq!(
        unreadable(&c, &all).await,
        Vec::<String>::new(),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_survive_a_killed_node_and_a_moved_slot() {
    let mut c = cluster::shared_repaired().await;
    let strata = start(&c).await;
    let place = Placement::of(&c);
    let mut sub = RawConn::connect(&strata.addr.to_string()).await;
    subscribe(&mut sub, "SUBSCRIBE", "events").await;
    // The node strata subscribed on.
    let hosts: Vec<String> = c
        .addrs()
        .into_iter()
        .filter(|a| {
            c.must(a, &["PUBSUB", "NUMSUB", "events"]).items().get(1) == Some(&Resp::Int(1))
        })
        .collect();
    let [host] = &hosts[..] else {
        panic!("strata's subscription on {hosts:?}")
    };
    let host = host.clone();
    let was_primary = place.primaries().contains(&host);
    let partner = if was_primary {
        c.replica_of(&host)
    } else {
        place
            .primaries()
            .into_iter()
            .find(|p| c.replica_of(p) == host)
            .expect("its primary")
    };
    blocking(|| {
        c.kill(&host);
        if was_primary {
            wait_promoted(&c, &partner);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    'received: loop {
        n += 1;
        let payload = format!("after-kill-{n}");
        for node in c.live_addrs() {
            let _ = blocking(|| query(&node, &["PUBLISH", "events", &payload]));
        }
        if let Some(f) = sub.read_frame_within(Duration::from_millis(200)).await {
            match Resp::parse(&f).items() {
                [Resp::Str(kind), Resp::Str(ch), Resp::Str(_)]
                    if kind == "message" && ch == "events" =>
                {
                    break 'received
                }
                other => panic!("subscriber got {other:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no message through strata since {host} was killed"
        );
    }
    blocking(|| {
        restart_healthy(&mut c, &host);
        if was_primary {
            failover_healthy(&c, &host);
        }
    });

    // A shard channel whose slot moves to another primary and back.
    let prims = place.primaries();
    let ch = place.key_on(&prims[0], "moving-channel:");
    let slot = hash_slot(ch.as_bytes());
    let mut ssub = RawConn::connect(&strata.addr.to_string()).await;
    subscribe(&mut ssub, "SSUBSCRIBE", &ch).await;
    spublish_until_received(&mut ssub, &prims[0], &ch, "before-move").await;
    for (to, payload) in [(&prims[1], "moved"), (&prims[0], "moved-back")] {
        blocking(|| c.migrate_slot(slot, to));
        spublish_until_received(&mut ssub, to, &ch, payload).await;
    }
}

/// A client with shard channels on two nodes (the second on an extra
/// connection, a link): when the link's node dies, the client is told
/// (its connection closes) rather than left subscribed to nothing, and
/// strata serves new subscribers once the cluster has recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_a_shard_link_node_closes_the_subscriber_and_nothing_hangs() {
    let mut c = cluster::shared_repaired().await;
    let strata = start(&c).await;
    let place = Placement::of(&c);
    let prims = place.primaries();
    let first = place.key_on(&prims[0], "link-a:");
    let second = place.key_on(&prims[1], "link-b:");
    let mut sub = RawConn::connect(&strata.addr.to_string()).await;
    subscribe(&mut sub, "SSUBSCRIBE", &first).await;
    assert_eq!(
        raw(&mut sub, &["SSUBSCRIBE", &second]).await,
        Resp::Array(vec![s("ssubscribe"), s(&second), Resp::Int(2)])
    );
    let victim = prims[1].clone();
    let replica = c.replica_of(&victim);
    blocking(|| {
        c.kill(&victim);
        wait_promoted(&c, &replica);
    });
    // The subscriber's connection is closed (bounded wait; never a hang).
    sub.expect_closed().await;
    // A new subscriber on the promoted node works, once strata's view
    // has followed the promotion.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut again = RawConn::connect(&strata.addr.to_string()).await;
        match raw(&mut again, &["SSUBSCRIBE", &second]).await {
            Resp::Array(items) if items.get(2) == Some(&Resp::Int(1)) => break,
            other => assert!(
                Instant::now() < deadline,
                "SSUBSCRIBE after the failover: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    blocking(|| {
        restart_healthy(&mut c, &victim);
        failover_healthy(&c, &victim);
    });
}
