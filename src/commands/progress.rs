//! Progress of `up`, `start` and `update` on stderr: a live line per service on a terminal, plain
//! timestamped lines in CI logs.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lifecycle::admission::{self, Waiting};
use crate::lifecycle::{Phase, Progress};
use crate::output;

/// How often plain progress lines repeat where a start waits for capacity.
const WAITING_EVERY: Duration = Duration::from_secs(10);
/// How often plain progress lines report a pull's bytes.
const BYTES_EVERY: Duration = Duration::from_secs(5);

/// `312.4 MB / 2.1 GB`, in decimal units as Docker shows them.
fn pulled(done: u64, total: u64) -> String {
    format!("{} / {}", bytes(done), bytes(total))
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

struct Line {
    phase: Phase,
    /// When the service became ready or failed: its elapsed time stops there.
    done: Option<Duration>,
}

struct Live {
    lines: BTreeMap<String, Line>,
    drawn: usize,
    started: Instant,
    /// Drawing stopped: a message replaced the lines.
    stopped: bool,
    /// `waiting for capacity: ...`, above the services until the start is admitted.
    banner: Option<String>,
}

impl Live {
    fn draw(&mut self) {
        if self.stopped {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.drawn > 0 {
            // Move up over the previous drawing and clear to the end of the screen.
            let _ = write!(err, "\x1b[{}F\x1b[J", self.drawn);
        }
        if let Some(banner) = &self.banner {
            let _ = writeln!(err, " {banner}");
        }
        let width = self.lines.keys().map(String::len).max().unwrap_or(0);
        for (service, line) in &self.lines {
            let elapsed = line.done.unwrap_or_else(|| self.started.elapsed());
            let mark = match line.phase {
                Phase::Ready => "✔",
                Phase::Failed => "✘",
                _ => "•",
            };
            let _ = writeln!(
                err,
                " {mark} {service:<width$}  {:<9} {:>6.1}s{}",
                line.phase.as_str(),
                elapsed.as_secs_f64(),
                match line.phase {
                    Phase::Downloading { done, total } => format!("  {}", pulled(done, total)),
                    _ => String::new(),
                }
            );
        }
        self.drawn = self.lines.len() + usize::from(self.banner.is_some());
        let _ = err.flush();
    }
}

/// A progress reporter, and a guard that stops its redraw ticker when dropped.
pub struct Reporter {
    pub progress: Progress,
    ticker: Option<tokio::task::JoinHandle<()>>,
    live: Option<Arc<Mutex<Live>>>,
    /// Set once the start was interrupted: progress events are no longer shown.
    quiet: Arc<AtomicBool>,
}

impl Reporter {
    /// Stops showing progress and says `message` instead: after an interrupt the lines would
    /// tick on while envctl does something else.
    pub fn interrupted(&self, message: &str) {
        self.quiet.store(true, Ordering::SeqCst);
        if let Some(ticker) = &self.ticker {
            ticker.abort();
        }
        if let Some(live) = &self.live {
            let mut live = live.lock().expect("progress lock");
            live.draw();
            live.stopped = true;
        }
        output::message(message);
    }
}

impl Reporter {
    /// Shows where the start waits for the engine's capacity: a live line above the services
    /// on a terminal, a timestamped line in CI logs when its place changes, and every
    /// [`WAITING_EVERY`] otherwise.
    pub fn on_wait(&self) -> admission::OnWait {
        let quiet = self.quiet.clone();
        if let Some(live) = &self.live {
            let live = live.clone();
            return Arc::new(move |waiting: &Waiting| {
                let mut live = live.lock().expect("progress lock");
                live.banner = Some(format!(
                    "waiting for capacity: {} ({:.0}s)",
                    admission::describe(waiting),
                    waiting.waited.as_secs_f64()
                ));
                live.started = Instant::now();
            });
        }
        let last: Mutex<Option<(usize, Instant)>> = Mutex::default();
        Arc::new(move |waiting: &Waiting| {
            if quiet.load(Ordering::SeqCst) {
                return;
            }
            let mut last = last.lock().expect("progress lock");
            let now = Instant::now();
            if last.is_some_and(|(place, at)| place == waiting.place && now - at < WAITING_EVERY) {
                return;
            }
            *last = Some((waiting.place, now));
            output::message(&format!(
                "{} waiting for capacity: {} (waited {:.0}s)",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                admission::describe(waiting),
                waiting.waited.as_secs_f64()
            ));
        })
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(live) = &self.live {
            live.lock().expect("progress lock").draw();
        }
    }
}

/// A reporter for `services`, live when stderr is a terminal.
pub fn reporter<'a>(services: impl IntoIterator<Item = &'a str>) -> Reporter {
    let quiet = Arc::new(AtomicBool::new(false));
    if !output::stderr_is_terminal() {
        let started = Instant::now();
        let silenced = quiet.clone();
        let last_bytes: Mutex<BTreeMap<String, Instant>> = Mutex::default();
        let progress: Progress = Arc::new(move |service: &str, phase: Phase| {
            if phase == Phase::Waiting || silenced.load(Ordering::SeqCst) {
                return;
            }
            let text = match phase {
                // A pull sends many of these a second: a CI log gets one every few seconds.
                Phase::Downloading { done, total } => {
                    let mut last = last_bytes.lock().expect("progress lock");
                    let now = Instant::now();
                    if last.get(service).is_some_and(|at| now - *at < BYTES_EVERY) {
                        return;
                    }
                    last.insert(service.to_string(), now);
                    format!("pulling {}", pulled(done, total))
                }
                _ => phase.as_str().to_string(),
            };
            output::message(&format!(
                "{} {service} {text} (+{:.1}s)",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                started.elapsed().as_secs_f64()
            ));
        });
        return Reporter {
            progress,
            ticker: None,
            live: None,
            quiet,
        };
    }
    let now = Instant::now();
    let lines = services
        .into_iter()
        .map(|s| {
            let line = Line {
                phase: Phase::Waiting,
                done: None,
            };
            (s.to_string(), line)
        })
        .collect();
    let live = Arc::new(Mutex::new(Live {
        lines,
        drawn: 0,
        started: now,
        stopped: false,
        banner: None,
    }));
    let for_events = live.clone();
    let progress: Progress = Arc::new(move |service: &str, phase: Phase| {
        let mut live = for_events.lock().expect("progress lock");
        // Admitted: the start is under way.
        live.banner = None;
        let started = live.started;
        // A service not announced up front (`update` learns its dependents as it goes) gets a
        // line at its first event.
        let line = live
            .lines
            .entry(service.to_string())
            .or_insert(Line { phase, done: None });
        line.phase = phase;
        if matches!(phase, Phase::Ready | Phase::Failed) {
            line.done = Some(started.elapsed());
        }
        // A pull reports its bytes many times a second: the ticker shows the latest.
        if !matches!(phase, Phase::Downloading { .. }) {
            live.draw();
        }
    });
    let for_ticker = live.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for_ticker.lock().expect("progress lock").draw();
        }
    });
    Reporter {
        progress,
        ticker: Some(ticker),
        live: Some(live),
        quiet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulled_bytes_read_as_docker_shows_them() {
        assert_eq!(pulled(0, 512), "0 B / 512 B");
        assert_eq!(pulled(312_400_000, 2_147_483_648), "312.4 MB / 2.1 GB");
        assert_eq!(bytes(999_400), "999.4 kB");
        assert_eq!(bytes(1_000), "1.0 kB");
    }
}
