//! A small builder for running the envctl binary and asserting on what it printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, where `environments/` and `demo/` live.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Envctl {
    command: Command,
}

impl Envctl {
    pub fn new() -> Envctl {
        let mut command = Command::new(env!("CARGO_BIN_EXE_envctl"));
        command
            .current_dir(root())
            .env(
                "ENVCTL_STATE_DIR",
                std::env::temp_dir().join(format!("envctl-tests-{}", std::process::id())),
            )
            .env_remove("ENVCTL_ENVDIR")
            .env_remove("RUST_LOG")
            .env_remove("BUILD_TAG")
            // The test swarm's env file, for the swarm tests: not for envctl, nor the commands
            // `envctl run` starts (whose ENVCTL_ variables some tests list).
            .env_remove("ENVCTL_TEST_SWARM");
        Envctl { command }
    }

    pub fn args<I, S>(mut self, args: I) -> Envctl
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Envctl {
        self.command.env(key, value);
        self
    }

    /// Runs envctl in `dir` instead of the repository root.
    pub fn current_dir(mut self, dir: &Path) -> Envctl {
        self.command.current_dir(dir);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Envctl {
        self.command.env_remove(key);
        self
    }

    pub fn envdir(self, dir: &Path) -> Envctl {
        self.env("ENVCTL_ENVDIR", dir)
    }

    pub fn command(self) -> Command {
        self.command
    }

    pub fn run(mut self) -> Run {
        let output = self.command.output().expect("envctl runs");
        Run { output }
    }

    /// Runs envctl with `input` on its standard input.
    pub fn run_with_stdin(mut self, input: Vec<u8>) -> Run {
        use std::io::Write;
        let mut child = self
            .command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("envctl starts");
        let mut stdin = child.stdin.take().expect("stdin");
        // envctl may stop reading early (a size limit): a broken pipe is its answer, not ours.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("envctl ends");
        let _ = writer.join();
        Run { output }
    }

    /// Runs envctl, failing the test instead of hanging when it does not end within `limit`.
    #[track_caller]
    pub fn run_within(self, limit: std::time::Duration) -> Run {
        let mut running = self.spawn();
        let start = std::time::Instant::now();
        while running.child.try_wait().expect("poll envctl").is_none() {
            if start.elapsed() > limit {
                let _ = running.child.kill();
                let run = running.wait();
                panic!(
                    "envctl still ran after {limit:?}\n--- stderr\n{}",
                    run.stderr()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        running.wait()
    }

    /// Starts envctl without waiting, its output captured as it comes (a long-running envctl
    /// never blocks on a full pipe): finish it with [`Running::wait`].
    pub fn spawn(mut self) -> Running {
        let mut child = self
            .command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("envctl starts");
        let stdout = Drain::new(child.stdout.take().expect("piped stdout"));
        let stderr = Drain::new(child.stderr.take().expect("piped stderr"));
        Running {
            child,
            stdout,
            stderr,
        }
    }
}

/// A pipe read to its end on a thread of its own, what came so far readable meanwhile.
struct Drain {
    read: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Drain {
    fn new(mut pipe: impl std::io::Read + Send + 'static) -> Drain {
        let read = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = read.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                into.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
        });
        Drain { read, reader }
    }

    fn so_far(&self) -> String {
        String::from_utf8_lossy(&self.read.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn end(self) -> Vec<u8> {
        let _ = self.reader.join();
        std::mem::take(&mut *self.read.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// An envctl process running in the background.
pub struct Running {
    pub child: std::process::Child,
    stdout: Drain,
    stderr: Drain,
}

impl Running {
    pub fn wait(mut self) -> Run {
        let status = self.child.wait().expect("envctl ends");
        let output = Output {
            status,
            stdout: self.stdout.end(),
            stderr: self.stderr.end(),
        };
        Run { output }
    }

    /// What envctl printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.so_far()
    }

    /// Waits at most `limit` for envctl to end; kills it and fails the test if it does not.
    #[track_caller]
    pub fn wait_within(mut self, limit: std::time::Duration) -> Run {
        let deadline = std::time::Instant::now() + limit;
        while self.child.try_wait().expect("envctl status").is_none() {
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let run = self.wait();
                panic!(
                    "envctl still ran after {limit:?}\n--- stderr\n{}",
                    run.stderr()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.wait()
    }

    /// Sends `signal` (`INT`, `TERM`) to envctl.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }
}

pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.output.status.code(),
            Some(expected),
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Run {
        self.code(0)
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Run {
        assert!(
            self.stderr().contains(text),
            "stderr lacks {text:?}\n--- stderr\n{}",
            self.stderr()
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Run {
        assert!(
            self.stdout().contains(text),
            "stdout lacks {text:?}\n--- stdout\n{}",
            self.stdout()
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout()))
    }
}

/// A temporary directory of environment files.
pub struct EnvDir {
    pub dir: tempfile::TempDir,
}

impl EnvDir {
    pub fn new() -> EnvDir {
        EnvDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn with(self, name: &str, text: &str) -> EnvDir {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create directory");
        }
        std::fs::write(path, text).expect("write environment file");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Polls `done` every 50 ms until it holds, and fails the test naming `what` when it does not
/// within `limit`: a wait on the state a test needs instead of a fixed sleep.
#[track_caller]
pub fn wait_until(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
