//! Intake: from the Telemetry API's POSTs to events in the buffer.
//!
//! The [`listener`] is a small hardened HTTP/1.1 server that only the platform can reach
//! (secret path, bounded slots, read timeouts); it hands whole bodies to the [`receiver`],
//! which parses them element by element, drops what the [`filter`] excludes, [`truncate`]s
//! what is too big for a record, [`enrich`]es each event with where it came from (and its
//! [`tenant`]), gives it its partition key (`event::key`) and admits it to the buffer.
//! Nothing here waits on Kinesis. The execution environment's id that events carry, and
//! the SnapStart restore that changes it, are [`snapstart`]'s (the lifecycle loop tells it
//! of the restore too).

pub mod enrich;
pub mod filter;
pub mod listener;
pub mod receiver;
pub mod snapstart;
pub mod tenant;
pub mod truncate;
