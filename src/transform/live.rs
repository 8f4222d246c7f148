//! The transforms in force, replaceable by a config reload.
//!
//! Every command asks whether any rule exists; that question stays one
//! relaxed load (`any`), as it was before transforms could be reloaded.
//! Only a command a rule may concern loads the current [`Transforms`].
//! A request sealed under the old rules and answered after a reload is
//! opened with the new ones: its plan names the key ids it needs, and the
//! keyring keeps old ids for rotation (a reload that removes a key still
//! in use fails those opens, as a restart without it would).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::Transforms;

/// See the module docs.
#[derive(Debug)]
pub struct LiveTransforms {
    current: ArcSwap<Transforms>,
    any: AtomicBool,
}

impl LiveTransforms {
    /// Starts with `transforms`.
    pub fn new(transforms: Transforms) -> LiveTransforms {
        LiveTransforms {
            any: AtomicBool::new(!transforms.is_empty()),
            current: ArcSwap::from_pointee(transforms),
        }
    }

    /// True when no rule is configured: skip transforms entirely.
    #[inline]
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Relaxed)
    }

    /// The transforms in force now.
    pub fn load(&self) -> Guard<Arc<Transforms>> {
        self.current.load()
    }

    /// The transforms in force now, to hold across awaits.
    pub fn load_full(&self) -> Arc<Transforms> {
        self.current.load_full()
    }

    /// Whether a rule may concern the command `name` (false at once when
    /// there are no rules).
    #[inline]
    pub fn concerns(&self, name: &[u8]) -> bool {
        !self.is_empty() && self.load().concerns(name)
    }

    /// Puts `transforms` in force for the commands that come next.
    pub fn replace(&self, transforms: Transforms) {
        let any = !transforms.is_empty();
        self.current.store(Arc::new(transforms));
        self.any.store(any, Ordering::Relaxed);
    }
}
