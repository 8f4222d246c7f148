#!/usr/bin/env python3
"""Generates src/command/table.rs from a live Redis 7.0 `COMMAND INFO`.

Usage (from the crate root):

    python3 tests/support/gen_command_table.py            # starts its own redis-server
    python3 tests/support/gen_command_table.py --port 6379 # uses a running one

The facts about each command (arity, flags, legacy first/last/step, key specs,
subcommands) come from Redis itself, so the table cannot drift from what the
server enforces; `tests/command_table.rs` re-checks the committed table against
a live server. What strata *does* with a command (its route, how replies are
merged, whether it touches connection state) is strata's own policy and lives
in the rule tables below -- in one place, as data, so a reviewer can read the
whole policy at a glance.

Standard library only. The generated file is formatted with `rustfmt` when it
is on PATH, so regenerating produces a clean diff.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# --------------------------------------------------------------------------
# Policy: strata's rule tables. Names are lower case, subcommands `container|sub`
# exactly as `COMMAND INFO` spells them.
# --------------------------------------------------------------------------

# Commands that change or read state of the *client connection* on the server.
# Such a command cannot run on a shared, multiplexed backend connection: strata
# either answers it itself (Local) or gives the session its own connection
# (Dedicated). Sets strata's `Flags::CONNECTION_STATE`.
CONNECTION_STATE = {
    # answered by strata (see ROUTE_RULES, Local)
    "ping", "echo", "quit", "reset", "hello", "auth", "select",
    "readonly", "readwrite", "asking",
    "client|setname", "client|getname", "client|id", "client|info",
    "client|list", "client|reply", "client|setinfo", "client|no-evict",
    "client|kill", "client|unblock",
    # need a dedicated backend connection
    "multi", "exec", "discard", "watch", "unwatch", "monitor",
    "subscribe", "psubscribe", "ssubscribe",
    "unsubscribe", "punsubscribe", "sunsubscribe",
    "client|tracking", "client|caching", "client|trackinginfo", "client|getredir",
}

# Explicit (route, merge) per command. Anything not listed here falls through
# to the derived rules in `route_of` below, in this order:
#   1. the Redis `blocking` flag           -> (Dedicated, One)
#   2. has a key spec or a legacy first key -> (Key, One)
#   3. otherwise (keyless)                  -> (Any, One)
ROUTE_RULES = {
    # -- Local: strata answers these itself; they never reach a backend.
    "ping": ("Local", "One"),
    "echo": ("Local", "One"),
    "quit": ("Local", "One"),
    "reset": ("Local", "One"),
    "hello": ("Local", "One"),
    "auth": ("Local", "One"),
    "select": ("Local", "One"),
    "readonly": ("Local", "One"),
    "readwrite": ("Local", "One"),
    "asking": ("Local", "One"),
    "client|setname": ("Local", "One"),
    "client|getname": ("Local", "One"),
    "client|id": ("Local", "One"),
    "client|info": ("Local", "One"),
    "client|list": ("Local", "One"),
    "client|reply": ("Local", "One"),
    "client|setinfo": ("Local", "One"),  # Redis 7.2+; absent from 7.0
    "client|no-evict": ("Local", "One"),
    # strata's own clients, the ones CLIENT LIST shows.
    "client|kill": ("Local", "One"),
    "client|unblock": ("Local", "One"),
    # COMMAND's listing forms: the backend's reply with strata's own
    # commands merged in (src/command/own/, session/own_commands.rs).
    "command": ("Local", "One"),
    "command|count": ("Local", "One"),
    "command|docs": ("Local", "One"),
    "command|info": ("Local", "One"),
    "command|list": ("Local", "One"),
    # -- Dedicated: the session needs a backend connection of its own
    #    (transactions, pub/sub, tracking, WAIT). Blocking commands are added
    #    by rule 1; for XREAD/XREADGROUP the session decides by looking for BLOCK.
    "multi": ("Dedicated", "One"),
    "exec": ("Dedicated", "One"),
    "discard": ("Dedicated", "One"),
    "watch": ("Dedicated", "One"),
    "unwatch": ("Dedicated", "One"),
    "monitor": ("Dedicated", "One"),
    "subscribe": ("Dedicated", "One"),
    "psubscribe": ("Dedicated", "One"),
    "ssubscribe": ("Dedicated", "One"),
    "unsubscribe": ("Dedicated", "One"),
    "punsubscribe": ("Dedicated", "One"),
    "sunsubscribe": ("Dedicated", "One"),
    "client|tracking": ("Dedicated", "One"),
    "client|caching": ("Dedicated", "One"),
    "client|trackinginfo": ("Dedicated", "One"),
    "client|getredir": ("Dedicated", "One"),
    "wait": ("Dedicated", "One"),
    # -- Unsupported: would corrupt a shared connection or cannot be proxied.
    #    (CLIENT PAUSE/UNPAUSE, FAILOVER, REPLICAOF, SLAVEOF are server-wide
    #    admin commands and pass through as Any.)
    "sync": ("Unsupported", "One"),
    "psync": ("Unsupported", "One"),
    "replconf": ("Unsupported", "One"),
    # -- SplitBySlot: split by key slot, one request per owner, replies merged.
    "mget": ("SplitBySlot", "KeyOrder"),
    "mset": ("SplitBySlot", "AllOk"),
    "del": ("SplitBySlot", "Sum"),
    "unlink": ("SplitBySlot", "Sum"),
    "exists": ("SplitBySlot", "Sum"),
    "touch": ("SplitBySlot", "Sum"),
    # -- AllPrimaries: sent to every primary, replies merged.
    "keys": ("AllPrimaries", "Concat"),
    "scan": ("AllPrimaries", "Scan"),
    "dbsize": ("AllPrimaries", "Sum"),
    "randomkey": ("AllPrimaries", "First"),
    "flushall": ("AllPrimaries", "AllOk"),
    "flushdb": ("AllPrimaries", "AllOk"),
    "script|load": ("AllPrimaries", "First"),  # every node answers the same SHA1
    # 1 only where every primary has the script: element-wise AND.
    "script|exists": ("AllPrimaries", "AllTrue"),
    "script|flush": ("AllPrimaries", "AllOk"),
    "function|load": ("AllPrimaries", "First"),  # every node answers the library name
    "function|delete": ("AllPrimaries", "AllOk"),
    "function|flush": ("AllPrimaries", "AllOk"),
    "function|restore": ("AllPrimaries", "AllOk"),
    # -- AllNodes: server settings and statistics, on every node, replicas
    #    included (a replica promoted later must behave as its primary did).
    #    CONFIG GET stays Any: every node answers the same after CONFIG SET.
    "config|set": ("AllNodes", "AllOk"),
    "config|resetstat": ("AllNodes", "AllOk"),
    "config|rewrite": ("AllNodes", "AllOk"),
    "slowlog|reset": ("AllNodes", "AllOk"),
    "latency|reset": ("AllNodes", "Sum"),  # the number of events reset
    # -- PubSub: strata's one pub/sub node (cluster mode: the primary of
    #    slot 0). Every SUBSCRIBE/PSUBSCRIBE of strata's clients lives there
    #    too (the session sends subscriptions, which have the `pubsub` flag
    #    and no key, to that node), so PUBLISH counts every subscriber
    #    strata has, as one Redis would, and PUBSUB answers for all of them.
    "publish": ("PubSub", "One"),
    "pubsub|channels": ("PubSub", "One"),
    "pubsub|numsub": ("PubSub", "One"),
    "pubsub|numpat": ("PubSub", "One"),
    # Shard channels live on their slot's primary: ask every primary.
    "pubsub|shardchannels": ("AllPrimaries", "Concat"),
    "pubsub|shardnumsub": ("AllPrimaries", "SumPairs"),
    # OK if any primary killed a script, NOTBUSY only if none was busy
    # (Redis's own response_policy for these is one_succeeded).
    "script|kill": ("AllPrimaries", "OneSucceeded"),
    "function|kill": ("AllPrimaries", "OneSucceeded"),
}

# Rule names that this Redis version may legitimately lack (added in a later
# Redis). Any other rule name that Redis does not report is a typo: fail.
NEWER_THAN_7_0 = {"client|setinfo"}

# Redis flag name -> strata `Flags` constant. Redis flags not listed here
# (skip_monitor, skip_slowlog, allow_busy, no_async_loading, no_mandatory_keys,
# asking, ...) are not acted on by strata and are dropped.
FLAG_MAP = {
    "readonly": "READ",
    "write": "WRITE",
    "admin": "ADMIN",
    "blocking": "BLOCKING",
    "pubsub": "PUBSUB",
    "fast": "FAST",
    "noscript": "NOSCRIPT",
    "loading": "LOADING",
    "stale": "STALE",
    "denyoom": "DENYOOM",
    "movablekeys": "MOVABLE_KEYS",
    "no_auth": "NO_AUTH",
    "no_multi": "NO_MULTI",
}

# Order in which flag constants are written, so regenerating is deterministic.
FLAG_ORDER = [
    "READ", "WRITE", "ADMIN", "BLOCKING", "PUBSUB", "CONNECTION_STATE", "FAST",
    "NOSCRIPT", "LOADING", "STALE", "DENYOOM", "MOVABLE_KEYS", "NO_AUTH", "NO_MULTI",
    "RUNS_SCRIPT",
]


def runs_script(cmd):
    """strata's `Flags::RUNS_SCRIPT`: the command runs a Lua script or a
    function (EVAL, EVALSHA, FCALL and their _RO forms), which can keep the
    server busy for as long as it runs. Derived from Redis's data, not a list
    of names: the commands of the @scripting ACL category that take keys
    (SCRIPT and FUNCTION subcommands take none)."""
    return "@scripting" in cmd["categories"] and bool(cmd["key_specs"])


def route_of(name, flags, first_key, key_specs):
    """(route, merge) for one command, per the rule tables above."""
    if name in ROUTE_RULES:
        return ROUTE_RULES[name]
    if "blocking" in flags:
        return ("Dedicated", "One")
    if key_specs or first_key > 0:
        return ("Key", "One")
    return ("Any", "One")


# --------------------------------------------------------------------------
# A minimal RESP2 client.
# --------------------------------------------------------------------------


class RespError(Exception):
    pass


class Resp:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise RespError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise RespError("unexpected RESP type %r" % kind)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server():
    """Starts a throwaway redis-server; returns (process, port, tempdir)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="strata-gen-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if Resp("127.0.0.1", port).command("PING") == "PONG":
                return proc, port, tmp
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not become ready on port %d" % port)


# --------------------------------------------------------------------------
# COMMAND INFO -> Python structures.
# --------------------------------------------------------------------------


def pairs(flat):
    """A RESP2 flat [k, v, k, v, ...] list as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def parse_key_spec(raw):
    ks = pairs(raw)
    bs = pairs(ks["begin_search"])
    fk = pairs(ks["find_keys"])
    bspec = pairs(bs["spec"]) if bs["spec"] else {}
    fspec = pairs(fk["spec"]) if fk["spec"] else {}
    if bs["type"] == "index":
        begin = ("index", bspec["index"])
    elif bs["type"] == "keyword":
        begin = ("keyword", bspec["keyword"], bspec["startfrom"])
    elif bs["type"] == "unknown":
        begin = ("unknown",)
    else:
        sys.exit("unknown begin_search type %r" % bs["type"])
    if fk["type"] == "range":
        find = ("range", fspec["lastkey"], fspec["keystep"], fspec["limit"])
    elif fk["type"] == "keynum":
        find = ("keynum", fspec["keynumidx"], fspec["firstkey"], fspec["keystep"])
    elif fk["type"] == "unknown":
        find = ("unknown",)
    else:
        sys.exit("unknown find_keys type %r" % fk["type"])
    return (begin, find)


def parse_command(raw):
    name, arity, flags, first, last, step = raw[:6]
    key_specs = [parse_key_spec(k) for k in raw[8]] if len(raw) > 8 else []
    subs = [parse_command(s) for s in raw[9]] if len(raw) > 9 and raw[9] else []
    subs.sort(key=lambda c: c["name"].encode())
    return {
        "name": name.lower(),
        "arity": arity,
        "flags": set(flags),
        "categories": set(raw[6]) if len(raw) > 6 and raw[6] else set(),
        "first": first,
        "last": last,
        "step": step,
        "key_specs": key_specs,
        "subcommands": subs,
    }


# --------------------------------------------------------------------------
# Python structures -> Rust.
# --------------------------------------------------------------------------


def rust_flags(cmd):
    names = {FLAG_MAP[f] for f in cmd["flags"] if f in FLAG_MAP}
    if cmd["name"] in CONNECTION_STATE:
        names.add("CONNECTION_STATE")
    if runs_script(cmd):
        names.add("RUNS_SCRIPT")
    ordered = [n for n in FLAG_ORDER if n in names]
    if not ordered:
        return "Flags(0)"
    return "Flags::" + ordered[0] + "".join(".union(Flags::%s)" % n for n in ordered[1:])


def rust_key_spec(spec):
    begin, find = spec
    if begin[0] == "index":
        b = "BeginSearch::Index(%d)" % begin[1]
    elif begin[0] == "keyword":
        b = 'BeginSearch::Keyword { keyword: "%s", start_from: %d }' % (begin[1].upper(), begin[2])
    else:
        b = "BeginSearch::Unknown"
    if find[0] == "range":
        f = "FindKeys::Range { last_key: %d, step: %d, limit: %d }" % find[1:]
    elif find[0] == "keynum":
        f = "FindKeys::KeyNum { keynum_index: %d, first_key: %d, step: %d }" % find[1:]
    else:
        f = "FindKeys::Unknown"
    return "KeySpec { begin: %s, find: %s }" % (b, f)


def subs_ident(name):
    return name.upper().replace("-", "_").replace("|", "_") + "_SUBCOMMANDS"


def rust_spec(cmd, indent):
    route, merge = route_of(cmd["name"], cmd["flags"], cmd["first"], cmd["key_specs"])
    pad = " " * indent
    specs = ", ".join(rust_key_spec(s) for s in cmd["key_specs"])
    subs = subs_ident(cmd["name"]) if cmd["subcommands"] else "&[]"
    return "\n".join([
        pad + "CommandSpec {",
        pad + '    name: "%s",' % cmd["name"],
        pad + "    arity: %d," % cmd["arity"],
        pad + "    flags: %s," % rust_flags(cmd),
        pad + "    first_key: %d," % cmd["first"],
        pad + "    last_key: %d," % cmd["last"],
        pad + "    step: %d," % cmd["step"],
        pad + "    key_specs: &[%s]," % specs,
        pad + "    route: Route::%s," % route,
        pad + "    merge: Merge::%s," % merge,
        pad + "    subcommands: %s," % subs,
        pad + "},",
    ])


def render(commands, version):
    out = []
    out.append("// @generated by tests/support/gen_command_table.py from Redis %s `COMMAND INFO`." % version)
    out.append("// Do not edit by hand: change the rule tables in the generator and rerun")
    out.append("//     python3 tests/support/gen_command_table.py")
    out.append("// tests/command_table.rs checks this file against a live redis-server.")
    out.append("")
    out.append("//! Every Redis %s command and subcommand, as data." % version)
    out.append("//!")
    out.append("//! [`COMMANDS`] and each `subcommands` slice are sorted by name (byte order of")
    out.append("//! the lower-case name); `COMMAND_KEYS` and `SUBCOMMAND_KEYS` hold the same names")
    out.append("//! packed into integers, which is what [`super::lookup_name`] compares.")
    out.append("")
    out.append("use super::lookup::NameKey;")
    out.append("use super::{BeginSearch, CommandSpec, FindKeys, Flags, KeySpec, Merge, Route};")
    out.append("")
    for cmd in commands:
        if not cmd["subcommands"]:
            continue
        out.append("/// Subcommands of `%s`, sorted by name." % cmd["name"].upper())
        out.append("static %s: &[CommandSpec] = &[" % subs_ident(cmd["name"]))
        for sub in cmd["subcommands"]:
            out.append(rust_spec(sub, 4))
        out.append("];")
        out.append("")
    out.append("/// Every top-level command, sorted by name.")
    out.append("pub static COMMANDS: &[CommandSpec] = &[")
    for cmd in commands:
        out.append(rust_spec(cmd, 4))
    out.append("];")
    out.append("")
    out.append("/// The names of [`COMMANDS`] packed for the lookup, index for index.")
    out.append("pub(super) static COMMAND_KEYS: [NameKey; %d] = [" % len(commands))
    for cmd in commands:
        out.append('    NameKey::new("%s"),' % cmd["name"])
    out.append("];")
    out.append("")
    out.append("/// For each entry of [`COMMANDS`], index for index, the packed names of its")
    out.append("/// subcommands without the `container|` prefix (empty for plain commands).")
    out.append("pub(super) static SUBCOMMAND_KEYS: [&[NameKey]; %d] = [" % len(commands))
    for cmd in commands:
        if cmd["subcommands"]:
            keys = ", ".join('NameKey::new("%s")' % sub["name"].split("|", 1)[1] for sub in cmd["subcommands"])
            out.append("    &[%s]," % keys)
        else:
            out.append("    &[],")
    out.append("];")
    return "\n".join(out) + "\n"


def check_rules(commands):
    """Every rule must name a command Redis reports (or a known newer one)."""
    known = set()
    for cmd in commands:
        known.add(cmd["name"])
        for sub in cmd["subcommands"]:
            known.add(sub["name"])
    missing = (set(ROUTE_RULES) | CONNECTION_STATE) - known - NEWER_THAN_7_0
    if missing:
        sys.exit("rule names Redis does not know (typo?): %s" % ", ".join(sorted(missing)))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.normpath(os.path.join(here, "..", "..", "src", "command", "table.rs"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, help="use this running server instead of starting one")
    ap.add_argument("--out", default=default_out)
    args = ap.parse_args()

    proc = tmp = None
    port = args.port
    if port is None:
        proc, port, tmp = start_server()
    try:
        conn = Resp(args.host, port)
        info = conn.command("INFO", "server")
        version = next(
            line.split(":", 1)[1].strip()
            for line in info.splitlines() if line.startswith("redis_version:")
        )
        raw = conn.command("COMMAND", "INFO")
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)

    commands = sorted((parse_command(c) for c in raw), key=lambda c: c["name"].encode())
    check_rules(commands)
    with open(args.out, "w") as f:
        f.write(render(commands, version))
    rustfmt = shutil.which("rustfmt")
    if rustfmt:
        subprocess.check_call([rustfmt, "--edition", "2021", args.out])
    else:
        print("warning: rustfmt not on PATH; %s is unformatted" % args.out, file=sys.stderr)
    nsub = sum(len(c["subcommands"]) for c in commands)
    print("wrote %s: %d commands, %d subcommands (Redis %s)" % (args.out, len(commands), nsub, version))


if __name__ == "__main__":
    main()
