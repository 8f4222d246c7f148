//! Encodes an [`OwnCommand`] as Redis 7.0 does in COMMAND INFO
//! (`addReplyCommandInfo`) and COMMAND DOCS (`addReplyCommandDocs`):
//! same fields, same order, same types (sets are RESP3 sets, arrays in
//! RESP2; flags are status strings).

use super::{Arg, Begin, Find, KeySpec, OwnCommand};
use crate::protocol::ReplyBuf;

/// A set of status strings (`addReplyCommandFlags`).
fn statuses(r: &mut ReplyBuf, words: &[&str]) {
    r.set(words.len());
    for w in words {
        r.simple(w);
    }
}

/// One command's COMMAND INFO entry: ten elements.
pub fn info(r: &mut ReplyBuf, cmd: &OwnCommand) {
    r.array(10);
    r.bulk(cmd.name.as_bytes());
    r.integer(cmd.arity);
    statuses(r, cmd.flags);
    r.integer(cmd.legacy_keys.0);
    r.integer(cmd.legacy_keys.1);
    r.integer(cmd.legacy_keys.2);
    statuses(r, cmd.categories);
    r.set(cmd.tips.len());
    for tip in cmd.tips {
        r.bulk(tip.as_bytes());
    }
    r.set(cmd.key_specs.len());
    for spec in cmd.key_specs {
        key_spec(r, spec);
    }
    // Redis: an empty *set* without subcommands, an array of them otherwise.
    if cmd.subcommands.is_empty() {
        r.set(0);
    } else {
        r.array(cmd.subcommands.len());
        for sub in cmd.subcommands {
            info(r, sub);
        }
    }
}

fn key_spec(r: &mut ReplyBuf, spec: &KeySpec) {
    r.map(3 + usize::from(spec.notes.is_some()));
    if let Some(notes) = spec.notes {
        r.bulk(b"notes").bulk(notes.as_bytes());
    }
    r.bulk(b"flags");
    statuses(r, spec.flags);
    r.bulk(b"begin_search").map(2);
    match spec.begin {
        Begin::Index(pos) => {
            r.bulk(b"type").bulk(b"index");
            r.bulk(b"spec").map(1).bulk(b"index").integer(pos);
        }
        Begin::Keyword { keyword, startfrom } => {
            r.bulk(b"type").bulk(b"keyword");
            r.bulk(b"spec").map(2);
            r.bulk(b"keyword").bulk(keyword.as_bytes());
            r.bulk(b"startfrom").integer(startfrom);
        }
        Begin::Unknown => {
            r.bulk(b"type").bulk(b"unknown");
            r.bulk(b"spec").map(0);
        }
    }
    r.bulk(b"find_keys").map(2);
    match spec.find {
        Find::Range {
            lastkey,
            keystep,
            limit,
        } => {
            r.bulk(b"type").bulk(b"range");
            r.bulk(b"spec").map(3);
            r.bulk(b"lastkey").integer(lastkey);
            r.bulk(b"keystep").integer(keystep);
            r.bulk(b"limit").integer(limit);
        }
        Find::KeyNum {
            keynumidx,
            firstkey,
            keystep,
        } => {
            r.bulk(b"type").bulk(b"keynum");
            r.bulk(b"spec").map(3);
            r.bulk(b"keynumidx").integer(keynumidx);
            r.bulk(b"firstkey").integer(firstkey);
            r.bulk(b"keystep").integer(keystep);
        }
        Find::Unknown => {
            r.bulk(b"type").bulk(b"unknown");
            r.bulk(b"spec").map(0);
        }
    }
}

/// One command's COMMAND DOCS value (the map after its name).
pub fn docs(r: &mut ReplyBuf, cmd: &OwnCommand) {
    let len = 1
        + usize::from(!cmd.summary.is_empty())
        + usize::from(!cmd.since.is_empty())
        + usize::from(cmd.complexity.is_some())
        + usize::from(!cmd.arguments.is_empty())
        + usize::from(!cmd.subcommands.is_empty());
    r.map(len);
    if !cmd.summary.is_empty() {
        r.bulk(b"summary").bulk(cmd.summary.as_bytes());
    }
    if !cmd.since.is_empty() {
        r.bulk(b"since").bulk(cmd.since.as_bytes());
    }
    r.bulk(b"group").bulk(cmd.group.as_bytes());
    if let Some(c) = cmd.complexity {
        r.bulk(b"complexity").bulk(c.as_bytes());
    }
    if !cmd.arguments.is_empty() {
        r.bulk(b"arguments");
        args(r, cmd.arguments);
    }
    if !cmd.subcommands.is_empty() {
        r.bulk(b"subcommands").map(cmd.subcommands.len());
        for sub in cmd.subcommands {
            r.bulk(sub.name.as_bytes());
            docs(r, sub);
        }
    }
}

/// An argument list (`addReplyCommandArgList`).
fn args(r: &mut ReplyBuf, list: &[Arg]) {
    r.array(list.len());
    for a in list {
        // Redis lists `arguments` for every oneof and block, even empty.
        let nested = matches!(a.kind, super::ArgKind::OneOf | super::ArgKind::Block);
        let flags: Vec<&str> = [(a.optional, "optional"), (a.multiple, "multiple")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        let len = 2
            + usize::from(a.key_spec_index.is_some())
            + usize::from(a.token.is_some())
            + usize::from(a.summary.is_some())
            + usize::from(!flags.is_empty())
            + usize::from(nested);
        r.map(len);
        r.bulk(b"name").bulk(a.name.as_bytes());
        r.bulk(b"type").bulk(a.kind.as_str().as_bytes());
        if let Some(i) = a.key_spec_index {
            r.bulk(b"key_spec_index").integer(i);
        }
        if let Some(t) = a.token {
            r.bulk(b"token").bulk(t.as_bytes());
        }
        if let Some(s) = a.summary {
            r.bulk(b"summary").bulk(s.as_bytes());
        }
        if !flags.is_empty() {
            r.bulk(b"flags");
            statuses(r, &flags);
        }
        if nested {
            r.bulk(b"arguments");
            args(r, a.arguments);
        }
    }
}
