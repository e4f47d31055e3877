use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::select_all;

use crate::backend::{Backend, LogOptions, ServiceRecord};
use crate::cli::LogsArgs;
use crate::lifecycle::{self, Instance};
use crate::{Error, ExitStatus, output};

pub async fn exec(args: LogsArgs) -> Result<ExitStatus, Error> {
    let interrupts = match args.follow {
        true => super::Interrupts::Own,
        false => super::Interrupts::End,
    };
    super::briefly(interrupts, async |backend, signals| {
        let follow = args.follow;
        // Ctrl-C is how a followed log ends: quietly.
        tokio::select! {
            biased;
            result = logs(backend, args) => result,
            () = signals.received(1), if follow => Ok(ExitStatus::Code(130)),
        }
    })
    .await
}

async fn logs(backend: &dyn Backend, args: LogsArgs) -> Result<ExitStatus, Error> {
    let instance = lifecycle::require(backend, &args.id).await?;
    super::touch(backend.endpoint(), &instance.id, "envctl logs").await;
    let containers = chosen(&instance, &args.services)?;
    let width = containers
        .iter()
        .map(|c| c.service().len())
        .max()
        .unwrap_or(0);
    let colours = colours(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let options = LogOptions {
        follow: args.follow,
        tail: args.tail,
        // Always asked for: the services' lines are interleaved by time.
        timestamps: true,
        // Docker takes whole seconds: the lines of the second before are dropped below.
        since: args.since,
    };
    let streams = containers.iter().enumerate().map(|(i, c)| {
        let prefix = Prefix {
            service: format!("{:<width$}", c.service()),
            colour: colours.then(|| PALETTE[i % PALETTE.len()]),
        };
        backend
            .logs(&c.handle, options)
            .map(move |line| {
                line.map(|l| Line {
                    time: l.timestamp,
                    prefix: prefix.clone(),
                    text: l.text,
                })
            })
            .boxed()
    });
    let mut merged = select_all(streams);
    let shown = |line: &Line| args.since.is_none_or(|since| line.time >= Some(since));
    if args.follow {
        // Lines appear as they come, interleaved across services.
        while let Some(line) = merged.next().await {
            let line = line?;
            if shown(&line) {
                output::data(&line.render(args.timestamps));
            }
        }
    } else {
        // The whole history is there: sort it by time so the services interleave truly.
        let mut lines = Vec::new();
        while let Some(line) = merged.next().await {
            lines.push(line?);
        }
        lines.retain(shown);
        lines.sort_by_key(|line| line.time);
        let text: String = lines
            .iter()
            .map(|line| line.render(args.timestamps) + "\n")
            .collect();
        if !text.is_empty() {
            output::data(&text);
        }
    }
    Ok(ExitStatus::Success)
}

/// The services named, all when none is; an unknown service is bad input.
fn chosen<'a>(
    instance: &'a Instance,
    services: &[String],
) -> Result<Vec<&'a ServiceRecord>, Error> {
    if services.is_empty() {
        return Ok(instance.services.iter().collect());
    }
    let mut containers: Vec<&ServiceRecord> = Vec::new();
    for service in services {
        match instance.services.iter().find(|c| c.service() == service) {
            Some(container) if !containers.iter().any(|c| c.handle == container.handle) => {
                containers.push(container)
            }
            Some(_) => {}
            None => return Err(super::unknown_service(instance, service)),
        }
    }
    Ok(containers)
}

/// ANSI colours of the service prefixes, one per service in turn: those of docker-compose.
const PALETTE: [u8; 6] = [36, 33, 32, 35, 34, 31];

/// Whether to colour the prefixes: on a terminal, unless `NO_COLOR` is set to something.
fn colours(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

#[derive(Debug, Clone)]
struct Prefix {
    /// The service name, padded to the widest shown.
    service: String,
    colour: Option<u8>,
}

struct Line {
    time: Option<DateTime<Utc>>,
    prefix: Prefix,
    text: String,
}

impl Line {
    /// `proxy | text`, or `proxy | 2026-11-26T04:15:00.123456789Z text` with timestamps.
    fn render(&self, timestamps: bool) -> String {
        let prefix = match self.prefix.colour {
            Some(colour) => format!("\x1b[{colour}m{} |\x1b[0m", self.prefix.service),
            None => format!("{} |", self.prefix.service),
        };
        match (timestamps, &self.time) {
            (true, Some(time)) => format!("{prefix} {} {}", stamp(time), self.text),
            _ => format!("{prefix} {}", self.text),
        }
    }
}

/// `2026-11-26T04:15:00.123456789Z`: nanoseconds always, so the lines' times align.
fn stamp(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// How long saving the logs of a failed `run` may take: a hung engine must not hang the job.
const SAVE_BOUND: Duration = Duration::from_secs(60);

/// Writes each service's whole log, with timestamps, to `DIR/SERVICE.log` (creating `DIR`),
/// and returns the files written.
pub(super) async fn save(
    backend: &dyn Backend,
    instance: &Instance,
    dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let options = LogOptions {
        timestamps: true,
        ..Default::default()
    };
    let saving = async {
        let mut files = Vec::new();
        for container in &instance.services {
            let mut text = String::new();
            let mut lines = backend.logs(&container.handle, options);
            while let Some(line) = lines.next().await {
                let line = line.map_err(|e| e.to_string())?;
                if let Some(time) = &line.timestamp {
                    text.push_str(&stamp(time));
                    text.push(' ');
                }
                text.push_str(&line.text);
                text.push('\n');
            }
            let file = dir.join(format!("{}.log", container.service()));
            std::fs::write(&file, text)
                .map_err(|e| format!("cannot write `{}`: {e}", file.display()))?;
            files.push(file);
        }
        Ok(files)
    };
    tokio::time::timeout(SAVE_BOUND, saving)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the {} engine did not send them within {}",
                backend.info().kind.engine(),
                humantime::format_duration(SAVE_BOUND)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(colour: Option<u8>, timestamp: Option<&str>) -> Line {
        Line {
            time: timestamp.and_then(parse_time),
            prefix: Prefix {
                service: "db   ".into(),
                colour,
            },
            text: "listening on 1521".into(),
        }
    }

    #[test]
    fn lines_are_prefixed_by_service_with_the_time_when_asked() {
        let plain = line(None, Some("2026-11-26T04:15:00.000000001Z"));
        assert_eq!(plain.render(false), "db    | listening on 1521");
        assert_eq!(
            plain.render(true),
            "db    | 2026-11-26T04:15:00.000000001Z listening on 1521"
        );
        assert_eq!(
            line(Some(36), None).render(true),
            "\x1b[36mdb    |\x1b[0m listening on 1521"
        );
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colours(true, None));
        assert!(colours(true, Some(OsStr::new(""))));
        assert!(!colours(true, Some(OsStr::new("1"))));
        assert!(!colours(false, None));
    }

    fn parse_time(timestamp: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(timestamp)
            .ok()
            .map(|time| time.with_timezone(&Utc))
    }

    #[test]
    fn times_sort_across_fraction_widths() {
        let a = parse_time("2026-11-26T04:15:00.5Z");
        let b = parse_time("2026-11-26T04:15:00.123456789Z");
        assert!(b < a);
    }
}
