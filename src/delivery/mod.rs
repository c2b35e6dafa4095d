//! Delivery: from the buffer to Kinesis, paced so that the function's time stays its own.

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
