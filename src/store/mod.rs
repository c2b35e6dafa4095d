//! Store: where events wait between intake and delivery.
//!
//! The [`buffer`] is the one bounded queue (memory cap, stated policy when full); when a
//! spill directory is set, events that do not fit in memory go to [`spill`], which turns
//! events into opaque records and back, kept on disk by [`segments`] (checksummed,
//! owner-checked segment files that survive a restart).

pub mod buffer;
pub mod segments;
pub mod spill;
