//! What looking at a request produces: the [`Rewrite`] to send and the
//! [`ReplyPlan`] for decoding the reply, together a [`Prepared`].

use bytes::Bytes;

/// What to send to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// The request as the client sent it.
    Unchanged,
    /// These arguments instead (values sealed, or the command replaced:
    /// STRLEN becomes GET, HVALS becomes HGETALL).
    Args(Vec<Bytes>),
}

/// How to turn the backend's reply into the client's reply. Keys and fields
/// are kept from the request (cheap `Bytes` clones) because values are bound
/// to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyPlan {
    /// A bulk string value of `key` (GET, GETDEL, GETEX, GETSET, SET … GET).
    Value {
        /// The key.
        key: Bytes,
    },
    /// An array of values, one per key, in request order (MGET). Keys no
    /// rule matches pass through.
    Values {
        /// The keys, in request order.
        keys: Vec<Bytes>,
    },
    /// The request was rewritten to GET; answer the length of the value.
    StrlenOf {
        /// The key.
        key: Bytes,
    },
    /// HGET.
    HashField {
        /// The hash.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
    /// HMGET: an array of values, one per field.
    HashFields {
        /// The hash.
        key: Bytes,
        /// The fields, in request order.
        fields: Vec<Bytes>,
    },
    /// HGETALL: field/value pairs (a flat array in RESP2, a map in RESP3).
    HashPairs {
        /// The hash.
        key: Bytes,
    },
    /// HVALS, sent as HGETALL because values are bound to their fields;
    /// answer the values only.
    HashValues {
        /// The hash.
        key: Bytes,
    },
    /// HRANDFIELD … WITHVALUES: flat pairs in RESP2, an array of pairs in RESP3.
    HrandfieldWithValues {
        /// The hash.
        key: Bytes,
    },
    /// HSCAN: `[cursor, [field, value, …]]`.
    HashScan {
        /// The hash.
        key: Bytes,
    },
    /// List elements of `key`: one bulk (LPOP, LINDEX, LMOVE) or an array
    /// (LRANGE, LPOP with a count, SORT).
    ListElements {
        /// The list the elements come from.
        key: Bytes,
    },
    /// BLPOP/BRPOP: `[key, element]`; the key is in the reply.
    KeyValuePair,
    /// LMPOP/BLMPOP: `[key, [elements]]`; the key is in the reply.
    MpopReply,
}

/// The outcome of looking at a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// What to send.
    pub rewrite: Rewrite,
    /// How to decode the reply, if it holds transformed values.
    pub plan: Option<ReplyPlan>,
}

impl Prepared {
    /// Nothing to do: the request and its reply pass through.
    pub const PASS: Prepared = Prepared {
        rewrite: Rewrite::Unchanged,
        plan: None,
    };
}
