//! What a user pinning a release relies on: the binary says which version it is, and that
//! version is the newest one in `CHANGELOG.md` (`./build.sh release` names the zips after it).

use std::process::{Command, Stdio};

use kte_test_support as support;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn version_prints_the_package_version_and_touches_nothing_else() {
    // No Runtime API, no credentials, no stream: `--version` must not need any of them.
    let out = Command::new(support::extension_under_test!())
        .arg("--version")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("the extension binary runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("kinesis-telemetry-extension {VERSION}\n")
    );
    assert!(out.stderr.is_empty(), "{out:?}");
}

/// The release headings of the changelog, newest first: `## [1.2.3] - 2026-12-05`.
fn changelog_versions(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("## ["))
        .filter_map(|rest| rest.split_once("] - "))
        .map(|(v, date)| (v.to_owned(), date.trim().to_owned()))
        .collect()
}

#[test]
fn the_changelog_starts_with_this_version_and_versions_only_go_up() {
    let text = std::fs::read_to_string(support::repo_root().join("CHANGELOG.md"))
        .expect("CHANGELOG.md at the repository root");
    let versions = changelog_versions(&text);
    assert_eq!(
        versions.first().map(|(v, _)| v.as_str()),
        Some(VERSION),
        "CHANGELOG.md's newest release must be Cargo.toml's version"
    );
    let parse = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|n| n.parse().unwrap_or_else(|_| panic!("{v} is not x.y.z")))
            .collect()
    };
    for pair in versions.windows(2) {
        assert!(
            parse(&pair[0].0) > parse(&pair[1].0),
            "{} is listed above {}",
            pair[0].0,
            pair[1].0
        );
    }
    for (v, date) in &versions {
        let dated = date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-';
        assert!(
            dated || date == "unreleased",
            "{v}: the date is YYYY-MM-DD or `unreleased`, got {date:?}"
        );
    }
    for (v, date) in versions.iter().skip(1) {
        assert_ne!(date, "unreleased", "{v}: only the newest can be unreleased");
    }
}

/// An executable name or argument that is not UTF-8 must not abort the process (a release
/// build aborts on panic, and an extension crash resets the customer's environment): started
/// under such a name with a non-UTF-8 argument and no Runtime API, it says why it cannot run
/// and exits 1 by itself.
#[test]
fn a_non_utf8_name_or_argument_is_no_crash() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir().join(format!("kte-non-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(OsStr::from_bytes(b"kinesis-\xff\xfe-extension"));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(support::extension_under_test!(), &link).unwrap();
    let out = Command::new(&link)
        .arg(OsStr::from_bytes(b"--\xff"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:1")
        .stdin(Stdio::null())
        .output()
        .expect("the extension binary runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("internal error"), "{stderr}");
}
