//! SCAN across the primaries, behind one opaque cursor.
//!
//! A client scanning through strata sees one keyspace. strata walks the
//! primaries one after the other, in [`SlotMap::shards`] order (by lowest
//! slot), each with its own SCAN cursor, and hands the client one number
//! that says where it is.
//!
//! # Cursor encoding
//!
//! The client cursor is a decimal `u64` below 2^63 (so clients that parse
//! it as a signed 64-bit integer still work):
//!
//! ```text
//!  bit 63   62 ........ 50   49 ...... 40   39 ............... 0
//!  [ 0 ]   [ check: 13 ]    [ node: 10 ]   [ node cursor: 40 ]
//! ```
//!
//! * `node cursor`: the cursor of that node's own SCAN. Redis's cursor is
//!   bounded by its hash table size, so 40 bits hold any dataset a node can
//!   keep in memory (2^40 buckets); a larger one fails with a clear error
//!   rather than being truncated.
//! * `node`: the index of the primary in the map's shard order (at most
//!   1024 primaries).
//! * `check`: 13 bits of [`SlotMap::ownership_digest`]: the primaries and
//!   which slots each owns when the cursor was made.
//!
//! `0` starts a scan and `0` ends it, as in Redis; strata never hands out
//! an intermediate cursor of 0 (after node 0 the node index is non-zero,
//! and within node 0 the node cursor is).
//!
//! # The SCAN guarantee
//!
//! Redis guarantees that a full iteration returns every key present from
//! start to end at least once. Each node's SCAN gives that for the node's
//! keys. Across nodes it holds as long as no slot changes owner during the
//! scan: a key that moved from a node not yet scanned to one already
//! scanned would be missed. So a cursor is only accepted while the slot
//! ownership is the one it was made with (the `check` bits); after a slot
//! moved or a primary changed, the client gets an error telling it to
//! start again, rather than a silently incomplete scan. (13 bits: a
//! changed topology goes unnoticed with probability 1/8192.) Keys in a
//! slot that is mid-migration (MIGRATING/IMPORTING, not yet reassigned)
//! live on one of the two nodes at any time; one moving from a node not
//! yet scanned to one already scanned during that window can be missed,
//! which the map cannot show.

use bytes::{BufMut, Bytes, BytesMut};

use super::resp;
use super::slots::SlotMap;

/// Bits of the client cursor that hold the node's own cursor.
pub const NODE_CURSOR_BITS: u32 = 40;
/// Bits that hold the node index.
const NODE_BITS: u32 = 10;
/// Bits that hold the topology check.
const CHECK_BITS: u32 = 13;
/// The most primaries a scan can walk.
pub const MAX_SCAN_NODES: usize = 1 << NODE_BITS;

const NODE_CURSOR_MASK: u64 = (1 << NODE_CURSOR_BITS) - 1;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;
const CHECK_MASK: u64 = (1 << CHECK_BITS) - 1;

/// Where a scan is: which primary, and that primary's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Index into [`SlotMap::shards`].
    pub node: usize,
    /// That node's SCAN cursor.
    pub cursor: u64,
}

/// Why a SCAN step cannot go on. `Display` is the client's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Not a number, as Redis words it.
    #[error("ERR invalid cursor")]
    InvalidCursor,
    /// The cursor was made with another slot ownership.
    #[error("ERR SCAN cursor is from an older cluster topology (a slot or primary changed since the scan began); restart the scan with cursor 0")]
    TopologyChanged,
    /// A node returned a cursor that does not fit the encoding.
    #[error("ERR SCAN cursor {cursor} from {node} is too large for strata's cluster cursor")]
    CursorTooLarge {
        /// The node's address.
        node: String,
        /// Its cursor.
        cursor: u64,
    },
    /// More primaries than the cursor can number.
    #[error("ERR SCAN across more than 1024 primaries is not supported")]
    TooManyNodes,
    /// The node's reply is not `[cursor, [keys…]]`.
    #[error("ERR malformed SCAN reply from {0}")]
    BadReply(String),
}

impl ScanError {
    /// The error as a RESP error reply.
    pub fn to_reply(&self) -> Bytes {
        crate::protocol::reply::error(&self.to_string())
    }
}

fn check_bits(map: &SlotMap) -> u64 {
    let d = map.ownership_digest();
    // Fold the whole digest so every bit counts.
    (d ^ (d >> 13) ^ (d >> 26) ^ (d >> 39) ^ (d >> 52)) & CHECK_MASK
}

/// Encodes a position as the client's cursor.
pub fn encode(map: &SlotMap, pos: Position) -> Result<u64, ScanError> {
    if pos.node >= MAX_SCAN_NODES || map.shards().len() > MAX_SCAN_NODES {
        return Err(ScanError::TooManyNodes);
    }
    if pos.cursor > NODE_CURSOR_MASK {
        return Err(ScanError::CursorTooLarge {
            node: map
                .shards()
                .get(pos.node)
                .map(|s| s.primary.addr.clone())
                .unwrap_or_default(),
            cursor: pos.cursor,
        });
    }
    Ok((check_bits(map) << (NODE_CURSOR_BITS + NODE_BITS))
        | ((pos.node as u64) << NODE_CURSOR_BITS)
        | pos.cursor)
}

/// Decodes the client's cursor argument. `Ok(None)`: nothing to scan (no
/// primary owns a slot). Cursor `0` is the start of the first primary.
pub fn decode(map: &SlotMap, client_cursor: &[u8]) -> Result<Option<Position>, ScanError> {
    let cursor = resp::parse_u64(client_cursor).ok_or(ScanError::InvalidCursor)?;
    if map.shards().is_empty() {
        return Ok(None);
    }
    if map.shards().len() > MAX_SCAN_NODES {
        return Err(ScanError::TooManyNodes);
    }
    if cursor == 0 {
        return Ok(Some(Position { node: 0, cursor: 0 }));
    }
    let check = (cursor >> (NODE_CURSOR_BITS + NODE_BITS)) & CHECK_MASK;
    // Bit 63 is never set in a cursor strata made.
    let node = ((cursor >> NODE_CURSOR_BITS) & NODE_MASK) as usize;
    if cursor >> 63 != 0 || check != check_bits(map) || node >= map.shards().len() {
        return Err(ScanError::TopologyChanged);
    }
    Ok(Some(Position {
        node,
        cursor: cursor & NODE_CURSOR_MASK,
    }))
}

/// The SCAN request for one node: the client's arguments (`args[0]` the
/// command name, `args[1]` the cursor, then MATCH/COUNT/TYPE as sent) with
/// the node's cursor in place of the client's.
pub fn node_request(args: &[Bytes], node_cursor: u64) -> Bytes {
    let mut cursor_buf = itoa::Buffer::new();
    let cursor = cursor_buf.format(node_cursor).as_bytes();
    let mut out = BytesMut::with_capacity(32 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    put_header(&mut out, b'*', args.len().max(2));
    put_bulk(&mut out, args.first().map_or(&b"SCAN"[..], |a| &a[..]));
    put_bulk(&mut out, cursor);
    for arg in args.iter().skip(2) {
        put_bulk(&mut out, arg);
    }
    out.freeze()
}

/// The client's reply for one step: the node at `pos.node` answered
/// `node_reply` (`[cursor, [keys…]]`) to [`node_request`]. The keys pass
/// through as the node sent them; the cursor becomes the encoded next
/// position: the same node if its cursor is not 0, else the next primary,
/// else `0` (done).
pub fn client_reply(map: &SlotMap, pos: Position, node_reply: &[u8]) -> Result<Bytes, ScanError> {
    let node_addr = || {
        map.shards()
            .get(pos.node)
            .map(|s| s.primary.addr.clone())
            .unwrap_or_default()
    };
    let parts = resp::elements(node_reply).ok_or_else(|| ScanError::BadReply(node_addr()))?;
    let [cursor, keys] = parts.as_slice() else {
        return Err(ScanError::BadReply(node_addr()));
    };
    let next = resp::uint(cursor).ok_or_else(|| ScanError::BadReply(node_addr()))?;
    let next = if next != 0 {
        encode(
            map,
            Position {
                node: pos.node,
                cursor: next,
            },
        )?
    } else if pos.node + 1 < map.shards().len() {
        encode(
            map,
            Position {
                node: pos.node + 1,
                cursor: 0,
            },
        )?
    } else {
        0
    };
    let mut cursor_buf = itoa::Buffer::new();
    let mut out = BytesMut::with_capacity(keys.len() + 32);
    put_header(&mut out, b'*', 2);
    put_bulk(&mut out, cursor_buf.format(next).as_bytes());
    out.put_slice(keys);
    Ok(out.freeze())
}

/// The reply when there is nothing to scan: cursor 0, no keys.
pub fn empty_reply() -> Bytes {
    Bytes::from_static(b"*2\r\n$1\r\n0\r\n*0\r\n")
}

fn put_header(out: &mut BytesMut, kind: u8, n: usize) {
    out.put_u8(kind);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_header(out, b'$', data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn map() -> SlotMap {
        SlotMap::from_cluster_slots(include_bytes!("testdata/slots_resp2.resp"), "127.0.0.1")
            .unwrap()
    }

    fn moved_map() -> SlotMap {
        SlotMap::from_cluster_slots(
            include_bytes!("testdata/slots_resp2_split.resp"),
            "127.0.0.1",
        )
        .unwrap()
    }

    fn cursor_of(reply: &[u8]) -> Vec<u8> {
        let parts = resp::elements(reply).unwrap();
        resp::text(parts[0]).unwrap().to_vec()
    }

    #[test]
    fn round_trip() {
        let map = map();
        for node in 0..3 {
            for cursor in [0, 1, 7, 1 << 20, NODE_CURSOR_MASK] {
                let pos = Position { node, cursor };
                let c = encode(&map, pos).unwrap();
                assert!(c < 1 << 63);
                if node > 0 || cursor > 0 {
                    assert_ne!(c, 0);
                }
                assert_eq!(decode(&map, c.to_string().as_bytes()), Ok(Some(pos)));
            }
        }
        assert_eq!(
            decode(&map, b"0"),
            Ok(Some(Position { node: 0, cursor: 0 }))
        );
    }

    #[test]
    fn bad_cursors() {
        let map = map();
        for bad in [
            &b""[..],
            b"-1",
            b"abc",
            b"1.5",
            b" 1",
            b"18446744073709551616",
        ] {
            assert_eq!(decode(&map, bad), Err(ScanError::InvalidCursor), "{bad:?}");
        }
        assert_eq!(ScanError::InvalidCursor.to_string(), "ERR invalid cursor");
        // A cursor Redis itself would hand out is not ours.
        assert_eq!(decode(&map, b"17"), Err(ScanError::TopologyChanged));
        // Node index past the end.
        let c = (check_bits(&map) << 50) | (5 << 40) | 1;
        assert_eq!(
            decode(&map, c.to_string().as_bytes()),
            Err(ScanError::TopologyChanged)
        );
        let huge = encode(
            &map,
            Position {
                node: 1,
                cursor: 1 << 40,
            },
        );
        assert!(matches!(huge, Err(ScanError::CursorTooLarge { .. })));
        assert!(ScanError::TopologyChanged
            .to_reply()
            .starts_with(b"-ERR SCAN cursor is from an older cluster topology"));
    }

    #[test]
    fn topology_change_fails_clearly() {
        let c = encode(&map(), Position { node: 1, cursor: 9 }).unwrap();
        assert_eq!(
            decode(&moved_map(), c.to_string().as_bytes()),
            Err(ScanError::TopologyChanged)
        );
        // Cursor 0 always works.
        assert!(decode(&moved_map(), b"0").unwrap().is_some());
    }

    #[test]
    fn walks_every_node_then_ends() {
        let map = map();
        let mut pos = decode(&map, b"0").unwrap().unwrap();
        let mut visited = Vec::new();
        let mut steps = 0;
        loop {
            visited.push(pos.node);
            // Each node answers twice: a cursor, then 0.
            let node_reply: &[u8] = if pos.cursor == 0 {
                b"*2\r\n$2\r\n12\r\n*1\r\n$1\r\nk\r\n"
            } else {
                b"*2\r\n$1\r\n0\r\n*0\r\n"
            };
            let reply = client_reply(&map, pos, node_reply).unwrap();
            let cursor = cursor_of(&reply);
            steps += 1;
            if cursor == b"0" {
                break;
            }
            pos = decode(&map, &cursor).unwrap().unwrap();
            assert!(steps < 10);
        }
        assert_eq!(visited, [0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn requests_and_replies() {
        let args: Vec<Bytes> = ["scan", "123", "MATCH", "k*", "COUNT", "10"]
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        assert_eq!(
            &node_request(&args, 77)[..],
            b"*6\r\n$4\r\nscan\r\n$2\r\n77\r\n$5\r\nMATCH\r\n$2\r\nk*\r\n$5\r\nCOUNT\r\n$2\r\n10\r\n"
        );
        let map = map();
        let pos = Position { node: 2, cursor: 0 };
        // RESP3 replies keep their element encoding.
        let reply = client_reply(&map, pos, b"*2\r\n$1\r\n0\r\n*1\r\n+k\r\n").unwrap();
        assert_eq!(&reply[..], b"*2\r\n$1\r\n0\r\n*1\r\n+k\r\n");
        assert!(matches!(
            client_reply(&map, pos, b"-ERR x\r\n"),
            Err(ScanError::BadReply(_))
        ));
        assert_eq!(&empty_reply()[..], b"*2\r\n$1\r\n0\r\n*0\r\n");
        let empty = SlotMap::from_ranges(Vec::new()).unwrap();
        assert_eq!(decode(&empty, b"0"), Ok(None));
    }
}
