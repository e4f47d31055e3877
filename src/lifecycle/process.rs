//! Is the `envctl up` or `run` that started an environment still running? Answered only when
//! it can be known for sure: same machine boot, same PID namespace, and a process start time
//! that rules out a reused pid. Anything else is "cannot tell", which callers treat as alive.

/// This process, as [`alive`] can recognize it later: `boot-id:pid-namespace:pid:start-time`.
pub fn identity() -> String {
    let pid = std::process::id();
    format!(
        "{}:{}:{pid}:{}",
        boot_id().unwrap_or_default(),
        pid_namespace().unwrap_or_default(),
        start_time(pid).ok().flatten().unwrap_or_default()
    )
}

/// `Some(true)` if the process `identity` names runs, `Some(false)` if it is gone, `None` when
/// this machine cannot tell (another boot, machine or PID namespace, or an unreadable /proc).
pub fn alive(identity: &str) -> Option<bool> {
    let mut parts = identity.split(':');
    let (boot, namespace, pid, started) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if boot.is_empty() || Some(boot) != boot_id().as_deref() {
        return None;
    }
    if namespace.is_empty() || Some(namespace) != pid_namespace().as_deref() {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    match start_time(pid) {
        Ok(None) => Some(false),
        Ok(Some(now)) => Some(now == started),
        Err(_) => None,
    }
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string())
}

fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    // `pid:[4026531836]`: the inode number names the namespace.
    let inode: String = link
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    Some(inode)
}

/// The start time (in clock ticks since boot) of a live process; `Ok(None)` when there is no
/// such process or only its zombie.
fn start_time(pid: u32) -> std::io::Result<Option<String>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // `pid (comm) state ppid ...`: the command name may hold spaces, so split after `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    if matches!(fields.first(), Some(&("Z" | "X")) | None) {
        return Ok(None);
    }
    // Field 22 of stat is the start time; `fields` starts at field 3.
    Ok(fields.get(19).map(|s| s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_finished_one_is_not() {
        assert_eq!(alive(&identity()), Some(true));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let started = start_time(pid).ok().flatten().unwrap_or_default();
        child.wait().unwrap();
        let gone = format!(
            "{}:{}:{pid}:{started}",
            boot_id().unwrap(),
            pid_namespace().unwrap()
        );
        assert_eq!(alive(&gone), Some(false));
        assert_eq!(
            alive("other-boot:1:1:1"),
            None,
            "another machine cannot be judged"
        );
    }
}
