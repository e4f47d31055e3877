//! The terminal's foreground for `run`'s command.
//!
//! `run` starts its command in a process group of its own, so that a forwarded signal reaches
//! everything the command started. On a terminal, only the foreground process group may read
//! from it: an interactive command (`bash`, `sqlplus`) in a group of its own would be stopped
//! by SIGTTIN at its first read and hang. So, as a shell does for a job, envctl hands the
//! terminal to the command's group while it runs and takes it back afterwards.

use nix::sys::signal::{SigSet, Signal, killpg};
use nix::unistd::{Pid, getpgrp, tcgetpgrp, tcsetpgrp};

/// The terminal handed to a command's group; dropping it gives the terminal back to envctl.
#[derive(Debug)]
pub struct Foreground {
    previous: Pid,
}

impl Foreground {
    /// Makes `group` the foreground process group of the terminal on standard input, if
    /// standard input is a terminal and envctl is in its foreground (a backgrounded `envctl
    /// run ... &` leaves the terminal alone). `None` when nothing was handed over.
    pub fn give(group: Pid) -> Option<Foreground> {
        let previous = tcgetpgrp(std::io::stdin()).ok()?;
        if previous != getpgrp() {
            return None;
        }
        set_foreground(group).ok()?;
        // The command may have read the terminal before it was its own, and been stopped by
        // SIGTTIN for it: let it go on, now that its read can succeed.
        let _ = killpg(group, Signal::SIGCONT);
        Some(Foreground { previous })
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = set_foreground(self.previous);
    }
}

/// `tcsetpgrp` on standard input, from a thread that blocks SIGTTOU: envctl takes the terminal
/// back from the background, which the kernel answers with SIGTTOU (stopping envctl) unless
/// the calling thread blocks it. A thread of its own leaves every other thread's mask alone.
fn set_foreground(group: Pid) -> nix::Result<()> {
    std::thread::spawn(move || {
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        ttou.thread_block()?;
        tcsetpgrp(std::io::stdin(), group)
    })
    .join()
    .unwrap_or(Err(nix::errno::Errno::EIO))
}
