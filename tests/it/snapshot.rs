//! What users read, with what changes from run to run masked: environment names and ids,
//! host ports, times and ages. Tests compare the masked text with the whole expected text.

use regex::Regex;

/// `text` with `name` as `NAME`, times (RFC 3339, or to the minute in UTC) as `[TIME]`, host
/// ports as `[PORT]` and ages and idle times as `[SECONDS]`.
pub fn mask(text: &str, name: &str) -> String {
    let rules = [
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            "[TIME]",
        ),
        // As status and the reaper's reasons say them: `2026-11-26 04:15 UTC`, `04:15 UTC`.
        (r"(\d{4}-\d{2}-\d{2} )?\d{2}:\d{2} UTC", "[TIME]"),
        (r"(127\.0\.0\.1|0\.0\.0\.0):\d+", "$1:[PORT]"),
        (r#""host_port": \d+"#, r#""host_port": [PORT]"#),
        (
            r#""(age|idle)_seconds": \d+"#,
            r#""${1}_seconds": [SECONDS]"#,
        ),
    ];
    let mut text = text.replace(name, "NAME");
    for (pattern, replacement) in rules {
        text = Regex::new(pattern)
            .expect("mask pattern")
            .replace_all(&text, replacement)
            .into_owned();
    }
    text
}

/// A table masked, its columns separated by two spaces: masking changes the widths.
pub fn mask_table(text: &str, name: &str) -> String {
    let masked = mask(text, name);
    let spaces = Regex::new(" {2,}").expect("spaces");
    masked
        .lines()
        .map(|line| spaces.replace_all(line, "  ").into_owned() + "\n")
        .collect()
}

/// Asserts that `actual`, masked, is `expected`, showing both in full when not.
#[track_caller]
pub fn assert_masked(actual: &str, name: &str, expected: &str) {
    let masked = mask(actual, name);
    assert!(
        masked == expected,
        "snapshot differs\n--- expected\n{expected}\n--- actual (masked)\n{masked}"
    );
}

#[test]
fn masks_what_changes_between_runs() {
    assert_eq!(
        mask(
            r#"t-x-1 web 8080 -> 127.0.0.1:49153 at 2026-11-26T04:15:00.123Z, "host_port": 49153, "age_seconds": 3, stopped at 2026-11-26 04:15 UTC, last at 04:15 UTC"#,
            "t-x-1"
        ),
        r#"NAME web 8080 -> 127.0.0.1:[PORT] at [TIME], "host_port": [PORT], "age_seconds": [SECONDS], stopped at [TIME], last at [TIME]"#
    );
}
