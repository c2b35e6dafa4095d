//! Black-box harness of `kinesis-telemetry-extension`: runs the real extension binary
//! against in-process fakes of the Lambda Runtime API ([`fake_runtime`]), Kinesis
//! ([`fake_kinesis`]) and, for SnapStart, the container credentials endpoint
//! ([`fake_credentials`]), so each test reads as a few lines of intent:
//!
//! ```ignore
//! let mut lambda = Lambda::start(LambdaOptions::default().binary(extension_under_test!()));
//! lambda.invoke(3);
//! let out = lambda.shutdown();
//! assert!(out.exited_ok_before_deadline());
//! lambda.assert_each_event_delivered_once();
//! ```
//!
//! Used by the root package's integration tests (`tests/*.rs`, a dev-dependency) and by
//! the local sandbox (the `kte-sandbox` crate in `tests/sandbox`, `./build.sh local`). Its
//! own tests run once, with `cargo nextest run --workspace`: unit tests of the fakes' pure
//! parts (SigV4, dates, subscription and PutRecords validation) beside them, and in `tests/`
//! one file per fake testing it over the wire (it must reject what AWS rejects, with AWS's
//! shapes). Linux only (signals, `/proc`).
//!
//! Which binary runs: [`extension_under_test!`] in tests (the one Cargo built for them),
//! [`extension_binary`] in the sandbox (next to it in `target/<profile>/`); either way
//! `KINESIS_TELEMETRY_EXTENSION_BIN` names another build instead (e.g. the musl one).
//!
//! `unsafe` is denied except in [`process`] (signals, `waitid`, CPU affinity) and one
//! `listen(2)` in [`tcp`] (a listen backlog of our choosing, for connects that hang).
#![deny(unsafe_code)]

pub mod clock;
pub mod events;
pub mod fake_credentials;
pub mod fake_kinesis;
pub mod fake_runtime;
pub mod http;
pub mod kinesis_api;
pub mod kpl;
pub mod lambda;
pub mod moto;
pub mod pipes;
pub mod process;
pub mod rng;
pub mod sigv4;
pub mod tcp;
pub mod telemetry_pusher;
pub mod telemetry_records;
pub mod telemetry_subscription;

use std::path::{Path, PathBuf};

pub use events::EventFactory;
pub use fake_kinesis::{AfterStall, KinesisFault};
pub use fake_runtime::{RuntimeConfig, SubscribeMode};
pub use lambda::{multiset_diff, Lambda, LambdaOptions, ShutdownOutcome};

/// Name of the binary under test (also the `Lambda-Extension-Name` it must send).
pub const EXTENSION_NAME: &str = "kinesis-telemetry-extension";

/// Variable naming another build of the extension to run (the musl one, an arm64 one
/// with `KINESIS_TELEMETRY_EXTENSION_WRAPPER=qemu-aarch64-static`).
pub const BINARY_ENV: &str = "KINESIS_TELEMETRY_EXTENSION_BIN";

/// `$KINESIS_TELEMETRY_EXTENSION_BIN` when set, else `built`.
pub fn extension_binary_or(built: impl Into<PathBuf>) -> PathBuf {
    match std::env::var_os(BINARY_ENV) {
        Some(p) => p.into(),
        None => built.into(),
    }
}

/// The extension binary for the sandbox and other tools: `$KINESIS_TELEMETRY_EXTENSION_BIN`,
/// else the one in the running executable's `target/<profile>/` (where Cargo puts the
/// extension next to `sandbox`; a test executable sits one level down, in `deps/`).
pub fn extension_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    extension_binary_or(dir.join(EXTENSION_NAME))
}

/// The extension binary for a test of the root package: `$KINESIS_TELEMETRY_EXTENSION_BIN`,
/// else the one Cargo built for that test. A macro because `CARGO_BIN_EXE_<name>` is only
/// set while Cargo compiles the root package's integration tests (which also makes Cargo
/// build the binary before it runs them).
#[macro_export]
macro_rules! extension_under_test {
    () => {
        $crate::extension_binary_or(env!("CARGO_BIN_EXE_kinesis-telemetry-extension"))
    };
}

/// The repository's root directory (this crate is `<root>/tests/support`).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("the crate lives in <root>/tests/support")
}
