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
