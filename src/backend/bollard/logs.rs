//! An engine's output as lines, for containers and services alike: Docker sends chunks, each
//! stream (stdout, stderr) with its own partial line, each chunk led by its time when asked
//! for, and a line longer than 16 KiB cut into several chunks; envctl hands out whole lines.

use std::collections::{BTreeMap, VecDeque};

use bollard::errors::Error as BollardError;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::backend::{BackendError, LogLine, Result};

/// One line of output as the engine sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// RFC 3339 with nanoseconds, when asked for.
    pub timestamp: Option<String>,
    pub text: String,
}

impl Line {
    /// The line as the seam hands it out, its time parsed.
    pub fn into_seam(self) -> LogLine {
        LogLine {
            timestamp: self
                .timestamp
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            text: self.text,
        }
    }
}

/// The lines of the output bollard reads as `chunks`; a read that fails ends the lines with
/// the error `failed` makes of it.
pub fn lines(
    chunks: BoxStream<'static, Result<bollard::container::LogOutput, BollardError>>,
    timestamps: bool,
    failed: impl Fn(BollardError) -> BackendError + Send + 'static,
) -> BoxStream<'static, Result<Line>> {
    let state = LogState {
        chunks,
        lines: LineSplitter::new(timestamps),
        ready: VecDeque::new(),
        done: false,
        failed: Box::new(failed),
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                return Some((item, state));
            }
            if state.done {
                return None;
            }
            match state.chunks.next().await {
                Some(Ok(chunk)) => {
                    let (source, bytes) = split_log_output(chunk);
                    let lines = state.lines.push(source, &bytes);
                    state.ready.extend(lines.into_iter().map(Ok));
                }
                Some(Err(error)) => {
                    state.done = true;
                    state.ready.extend(state.lines.finish().into_iter().map(Ok));
                    state.ready.push_back(Err((state.failed)(error)));
                }
                None => {
                    state.done = true;
                    state.ready.extend(state.lines.finish().into_iter().map(Ok));
                }
            }
        }
    })
    .boxed()
}

/// The state of a log stream: the raw chunks, the lines made of them, and the lines and
/// errors ready to hand out.
struct LogState {
    chunks: BoxStream<'static, Result<bollard::container::LogOutput, BollardError>>,
    lines: LineSplitter,
    ready: VecDeque<Result<Line>>,
    done: bool,
    failed: Box<dyn Fn(BollardError) -> BackendError + Send>,
}

/// Which stream a chunk came from: each has its own partial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Stdout,
    Stderr,
    /// A TTY's or an unframed stream.
    Console,
}

fn split_log_output(output: bollard::container::LogOutput) -> (Source, Vec<u8>) {
    use bollard::container::LogOutput;
    match output {
        LogOutput::StdOut { message } => (Source::Stdout, message.to_vec()),
        LogOutput::StdErr { message } => (Source::Stderr, message.to_vec()),
        LogOutput::StdIn { message } | LogOutput::Console { message } => {
            (Source::Console, message.to_vec())
        }
    }
}

/// Splits chunks of output into lines, buffering a partial line per stream. With timestamps,
/// Docker starts every chunk (a log message, or part of one) with an RFC 3339 time and a
/// space; a line gets the time of its first chunk.
#[derive(Debug)]
struct LineSplitter {
    timestamps: bool,
    partial: BTreeMap<Source, Partial>,
}

#[derive(Debug, Default)]
struct Partial {
    text: Vec<u8>,
    timestamp: Option<String>,
}

impl LineSplitter {
    fn new(timestamps: bool) -> LineSplitter {
        LineSplitter {
            timestamps,
            partial: BTreeMap::new(),
        }
    }

    fn push(&mut self, source: Source, mut chunk: &[u8]) -> Vec<Line> {
        let timestamp = if self.timestamps {
            split_timestamp(&mut chunk)
        } else {
            None
        };
        let partial = self.partial.entry(source).or_default();
        if partial.text.is_empty() && partial.timestamp.is_none() {
            partial.timestamp.clone_from(&timestamp);
        }
        let mut lines = Vec::new();
        while let Some(end) = chunk.iter().position(|&byte| byte == b'\n') {
            partial.text.extend_from_slice(&chunk[..end]);
            lines.push(Line {
                timestamp: partial.timestamp.take(),
                text: line_text(std::mem::take(&mut partial.text)),
            });
            partial.timestamp.clone_from(&timestamp);
            chunk = &chunk[end + 1..];
        }
        if chunk.is_empty() {
            partial.timestamp = None;
        } else {
            partial.text.extend_from_slice(chunk);
        }
        lines
    }

    /// The partial lines left when the output ended.
    fn finish(&mut self) -> Vec<Line> {
        std::mem::take(&mut self.partial)
            .into_values()
            .filter(|partial| !partial.text.is_empty())
            .map(|partial| Line {
                timestamp: partial.timestamp,
                text: line_text(partial.text),
            })
            .collect()
    }
}

fn line_text(mut bytes: Vec<u8>) -> String {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Takes a leading `2026-11-26T04:15:00.123456789Z ` off `chunk`.
fn split_timestamp(chunk: &mut &[u8]) -> Option<String> {
    let end = chunk.iter().position(|&byte| byte == b' ')?;
    let candidate = std::str::from_utf8(&chunk[..end]).ok()?;
    let looks_like_time = candidate.len() >= 20
        && candidate.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && candidate.as_bytes()[4] == b'-'
        && candidate.as_bytes()[10] == b'T';
    if !looks_like_time {
        return None;
    }
    let timestamp = candidate.to_owned();
    *chunk = &chunk[end + 1..];
    Some(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_from_chunks() {
        let mut lines = LineSplitter::new(false);
        assert_eq!(
            lines.push(Source::Stdout, b"one\ntw"),
            vec![line(None, "one")]
        );
        assert_eq!(
            lines.push(Source::Stderr, b"err\r\n"),
            vec![line(None, "err")]
        );
        assert_eq!(
            lines.push(Source::Stdout, b"o\nthree\n"),
            vec![line(None, "two"), line(None, "three")]
        );
        assert_eq!(lines.push(Source::Stdout, b"partial"), vec![]);
        assert_eq!(lines.finish(), vec![line(None, "partial")]);
        assert_eq!(lines.finish(), vec![]);
    }

    #[test]
    fn lines_with_timestamps() {
        let t1 = "2026-11-26T04:15:00.000000001Z";
        let t2 = "2026-11-26T04:15:01.000000002Z";
        let mut lines = LineSplitter::new(true);
        assert_eq!(
            lines.push(Source::Stdout, format!("{t1} hello world\n").as_bytes()),
            vec![line(Some(t1), "hello world")]
        );
        // A message split in two: the line keeps the time of its start.
        assert_eq!(
            lines.push(Source::Stdout, format!("{t1} par").as_bytes()),
            vec![]
        );
        assert_eq!(
            lines.push(Source::Stdout, format!("{t2} tial\n").as_bytes()),
            vec![line(Some(t1), "partial")]
        );
        assert_eq!(
            lines.push(Source::Stdout, format!("{t2} a\nb\n").as_bytes()),
            vec![line(Some(t2), "a"), line(Some(t2), "b")]
        );
        assert_eq!(
            lines.push(Source::Stdout, b"no-time here\n"),
            vec![line(None, "no-time here")]
        );
    }

    fn line(timestamp: Option<&str>, text: &str) -> Line {
        Line {
            timestamp: timestamp.map(str::to_owned),
            text: text.into(),
        }
    }
}
