#[allow(dead_code)]
mod b64;
#[allow(dead_code)]
mod batch;
#[allow(dead_code, unused_imports)]
mod kinesis;
#[allow(dead_code)]
mod retry;
#[allow(dead_code)]
mod rng;
#[allow(dead_code)]
mod sign;

fn main() {}
