//! The bytes of a backend batch: a view of the client's read when its
//! commands lie back to back there, a copy otherwise.
//!
//! The session takes each read's whole requests out of its buffer in one
//! piece (the read's *chunk*), and every request's frame is a slice of it.
//! Consecutive plain commands, the common case of a pipeline, are then
//! already contiguous: the batch sent to the backend is one more slice of
//! the chunk (a reference count), not a copy of each frame. A frame that
//! is not in the chunk (rewritten by a value transform, or an inline
//! command re-encoded) turns the batch into a copy from there on.

use bytes::{Bytes, BytesMut};

/// The frames of one batch, back to back.
#[derive(Debug)]
pub(super) enum BatchFrames {
    /// `chunk[start..end]`: frames that lie back to back in the read.
    View {
        chunk: Bytes,
        start: usize,
        end: usize,
    },
    /// Frames copied one after another.
    Copied(BytesMut),
}

impl BatchFrames {
    /// A batch that starts with `frame`: a view when `frame` lies in
    /// `chunk`, else a copy with room for `capacity` bytes.
    pub(super) fn first(frame: &[u8], chunk: &Bytes, capacity: usize) -> BatchFrames {
        match offset_in(frame, chunk) {
            Some(start) => BatchFrames::View {
                chunk: chunk.clone(),
                start,
                end: start + frame.len(),
            },
            None => {
                let mut copy = BytesMut::with_capacity(capacity.max(frame.len()));
                copy.extend_from_slice(frame);
                BatchFrames::Copied(copy)
            }
        }
    }

    /// Appends `frame`: the view grows when `frame` follows it in the
    /// chunk; otherwise the batch is copied (once) and `frame` appended.
    pub(super) fn push(&mut self, frame: &[u8]) {
        match self {
            BatchFrames::View { chunk, start, end } => {
                if offset_in(frame, chunk) == Some(*end) {
                    *end += frame.len();
                    return;
                }
                let mut copy = BytesMut::with_capacity(*end - *start + frame.len());
                copy.extend_from_slice(&chunk[*start..*end]);
                copy.extend_from_slice(frame);
                *self = BatchFrames::Copied(copy);
            }
            BatchFrames::Copied(copy) => copy.extend_from_slice(frame),
        }
    }

    /// Bytes gathered.
    pub(super) fn len(&self) -> usize {
        match self {
            BatchFrames::View { start, end, .. } => end - start,
            BatchFrames::Copied(copy) => copy.len(),
        }
    }

    /// The frames, to send. The multiplexed connection copies a batch
    /// under 16 KiB into its write buffer as it is queued, so the view is
    /// released at once and the client's read buffer is reused in place.
    pub(super) fn freeze(self) -> Bytes {
        match self {
            BatchFrames::View { chunk, start, end } => chunk.slice(start..end),
            BatchFrames::Copied(copy) => copy.freeze(),
        }
    }
}

/// Where `frame` starts in `chunk`, when it lies wholly inside it (the
/// same memory, not equal bytes elsewhere).
fn offset_in(frame: &[u8], chunk: &[u8]) -> Option<usize> {
    let offset = (frame.as_ptr() as usize).checked_sub(chunk.as_ptr() as usize)?;
    (offset.checked_add(frame.len())? <= chunk.len()).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_slices_stay_a_view() {
        let chunk = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n");
        let (a, b) = (chunk.slice(0..14), chunk.slice(14..28));
        let mut frames = BatchFrames::first(&a, &chunk, 0);
        frames.push(&b);
        assert!(matches!(
            frames,
            BatchFrames::View {
                start: 0,
                end: 28,
                ..
            }
        ));
        assert_eq!(frames.len(), 28);
        let sent = frames.freeze();
        assert_eq!(sent, chunk);
        // A view, not a copy: the same memory.
        assert_eq!(sent.as_ptr(), chunk.as_ptr());
    }

    #[test]
    fn a_gap_or_a_foreign_frame_turns_it_into_a_copy() {
        let chunk = Bytes::from_static(b"AAAABBBBCCCC");
        let mut frames = BatchFrames::first(&chunk.slice(0..4), &chunk, 0);
        frames.push(&chunk.slice(8..12)); // skips BBBB
        assert!(matches!(frames, BatchFrames::Copied(_)));
        assert_eq!(frames.freeze(), Bytes::from_static(b"AAAACCCC"));

        // Equal bytes elsewhere are not the chunk.
        let elsewhere = Bytes::copy_from_slice(b"BBBB");
        let mut frames = BatchFrames::first(&chunk.slice(0..4), &chunk, 0);
        frames.push(&elsewhere);
        assert!(matches!(frames, BatchFrames::Copied(_)));
        assert_eq!(frames.freeze(), Bytes::from_static(b"AAAABBBB"));

        // A first frame from elsewhere starts a copy.
        let mut frames = BatchFrames::first(&elsewhere, &chunk, 64);
        frames.push(&chunk.slice(0..4));
        assert_eq!(frames.len(), 8);
        assert_eq!(frames.freeze(), Bytes::from_static(b"BBBBAAAA"));
    }
}
