//! The extension's executable: everything is in the library (`lib.rs` wires the threads).

fn main() {
    std::process::exit(kinesis_telemetry_extension::main());
}
