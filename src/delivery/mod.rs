//! Delivery: from the buffer to Kinesis, paced so that the function's time stays its own.
//!
//! One thread, the flusher, talks to Kinesis; the lifecycle loop drives it through windows.
//! The chain it runs, each step and the file that holds it:
//!
//! ```text
//! control    the lifecycle opens a window, waits for its Ack     control.rs
//! window     what it is for (hold the invocation?), its end      flusher.rs (open_window),
//!                                                                pacing.rs, timeline.rs
//! view       what the flusher sees now (buffer, Kinesis, run)    window.rs (View),
//!                                                                flusher.rs (Flusher::view)
//! next step  send, wait or close (pure)                          window.rs (next_step)
//! request    bounds, pack, build, one PutRecords                 request.rs (send),
//!                                                                records.rs (pack, build), sink.rs
//! outcome    what the answer says of each record (pure)          outcome.rs (Outcome::of)
//! settle     each event delivered, resent or dropped (pure)      outcome.rs (settle)
//! health     what it says of Kinesis: backoff, struggling,       health.rs;
//!            latency; the stream's send rate                     congestion.rs
//! ```
//!
//! The invariant all of it serves, nothing in flight when Lambda freezes the sandbox, and every
//! margin it needs: `timeline.rs`. The loop that ties the steps together: `Flusher::run`.
//!
//! Imports go one way: `flusher` uses the others, `request` the steps after it; the
//! decisions (`window`, `pacing`, `health`, `congestion`, `outcome`, `records`, `timeline`)
//! import no flusher.

pub mod congestion;
pub mod control;
pub mod flusher;
pub mod health;
pub mod outcome;
pub mod pacing;
pub mod records;
pub mod request;
pub mod sink;
pub mod timeline;
pub mod window;
