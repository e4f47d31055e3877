//! Where things are written: stdout carries data (tables, `--output json`), stderr carries
//! progress and messages, so `envctl up --output json | jq` always works.

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// Prints `error: MESSAGE` to stderr.
pub fn error(message: &str) {
    let _ = writeln!(std::io::stderr(), "error: {message}");
}

/// Prints `warning: MESSAGE` to stderr.
pub fn warning(message: &str) {
    let _ = writeln!(std::io::stderr(), "warning: {message}");
}

/// Prints a message for people to stderr.
pub fn message(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Prints data to stdout.
pub fn data(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

/// Prints one JSON document to stdout.
pub fn json<T: Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("output types serialize to JSON");
    data(&text);
}

/// Whether stderr is a terminal that can show live progress lines.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_some_and(|t| t != "dumb")
}

/// A plain text table: columns padded to their widest cell, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// A duration for people: `3h12m`, `45s`.
pub fn short_duration(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tables_align_columns() {
        let rows = vec![vec!["a".into(), "long value".into(), "x".into()]];
        assert_eq!(
            table(&["ID", "ENV", "STATE"], &rows),
            "ID  ENV         STATE\na   long value  x\n"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::from_secs(45)), "45s");
        assert_eq!(short_duration(Duration::from_secs(11520)), "3h12m");
        assert_eq!(short_duration(Duration::from_secs(90000)), "1d01h");
    }
}
