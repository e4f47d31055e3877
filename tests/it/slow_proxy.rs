//! A unix-socket proxy in front of the shared Docker engine that holds back one kind of
//! request, so a test can act while that request is in flight: the engine still gets it and
//! carries it out, even when envctl gave it up meanwhile, as a real engine does with a request
//! it had already read.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

const ENGINE_SOCKET: &str = "/var/run/docker.sock";

pub struct SlowProxy {
    /// `unix://...`, for `DOCKER_HOST`.
    pub host: String,
    path: PathBuf,
    /// Hears of each held-back request as it arrives.
    pub held: mpsc::Receiver<()>,
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
        let pattern = pattern.as_bytes().to_vec();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(engine) = UnixStream::connect(ENGINE_SOCKET) else {
                    continue;
                };
                let (pattern, notify) = (pattern.clone(), notify.clone());
                let (client_in, engine_out) =
                    (client.try_clone().unwrap(), engine.try_clone().unwrap());
                std::thread::spawn(move || {
                    forward_requests(client_in, engine_out, &pattern, delay, &notify);
                });
                std::thread::spawn(move || copy(engine, client));
            }
        });
        SlowProxy {
            host: format!("unix://{}", path.display()),
            path,
            held,
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
) {
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        if chunk.windows(pattern.len()).any(|w| w == pattern) {
            let _ = notify.send(());
            std::thread::sleep(delay);
        }
        if engine.write_all(chunk).is_err() {
            return;
        }
    }
}

/// Engine to client, until either side closes.
fn copy(mut engine: UnixStream, mut client: UnixStream) {
    let _ = std::io::copy(&mut engine, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
}
