//! A unix-socket proxy in front of the shared Docker engine that holds back one kind of
//! request, so a test can act while that request is in flight: the engine still gets it and
//! carries it out, even when envctl gave it up meanwhile, as a real engine does with a request
//! it had already read.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

const ENGINE_SOCKET: &str = "/var/run/docker.sock";

pub struct SlowProxy {
    /// `unix://...`, for `DOCKER_HOST`.
    pub host: String,
    path: PathBuf,
    /// Hears of each held-back request as it arrives.
    pub held: mpsc::Receiver<()>,
    /// Hears of the engine's answer to each held-back request: the engine has carried it out.
    pub answered: mpsc::Receiver<()>,
}

impl SlowProxy {
    /// Forwards everything to the shared engine at once, except requests whose bytes contain
    /// `pattern`: those are forwarded after `delay`.
    pub fn start(test: &str, pattern: &str, delay: Duration) -> SlowProxy {
        let path = PathBuf::from(format!(
            "/tmp/envctl-proxy-{}-{test}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind the proxy socket");
        let (notify, held) = mpsc::channel();
        let (notify_answer, answered) = mpsc::channel();
        let pattern = pattern.as_bytes().to_vec();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(engine) = UnixStream::connect(ENGINE_SOCKET) else {
                    continue;
                };
                let (pattern, notify) = (pattern.clone(), notify.clone());
                let (client_in, engine_out) =
                    (client.try_clone().unwrap(), engine.try_clone().unwrap());
                let awaiting = Arc::new(AtomicBool::new(false));
                let forwarded = awaiting.clone();
                std::thread::spawn(move || {
                    forward_requests(client_in, engine_out, &pattern, delay, &notify, &forwarded);
                });
                let notify_answer = notify_answer.clone();
                std::thread::spawn(move || copy(engine, client, &awaiting, &notify_answer));
            }
        });
        SlowProxy {
            host: format!("unix://{}", path.display()),
            path,
            held,
            answered,
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Client to engine. The engine side stays open when the client goes, so a held-back request
/// is still answered (to nobody).
fn forward_requests(
    mut client: UnixStream,
    mut engine: UnixStream,
    pattern: &[u8],
    delay: Duration,
    notify: &mpsc::Sender<()>,
    forwarded: &AtomicBool,
) {
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        let held = chunk.windows(pattern.len()).any(|w| w == pattern);
        if held {
            let _ = notify.send(());
            std::thread::sleep(delay);
            // Before the write: the answer may come back before the write returns.
            forwarded.store(true, Ordering::SeqCst);
        }
        if engine.write_all(chunk).is_err() {
            return;
        }
    }
}

/// Engine to client, until either side closes. A connection carries one request at a time: the
/// first bytes after a held-back request went out are its answer.
fn copy(
    mut engine: UnixStream,
    mut client: UnixStream,
    awaiting: &AtomicBool,
    answered: &mpsc::Sender<()>,
) {
    let mut buffer = [0u8; 64 * 1024];
    while let Ok(n @ 1..) = engine.read(&mut buffer) {
        if awaiting.swap(false, Ordering::SeqCst) {
            let _ = answered.send(());
        }
        if client.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}
