//! Who and what starts an environment: the owner, the CI build, this host and this process,
//! as the labels of everything envctl creates record them.

use crate::naming::codec::Build;

/// The Jenkins build running envctl, from `BUILD_URL`, `JOB_NAME` and `GIT_COMMIT`.
pub fn build_labels() -> Build {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Build {
        url: var("BUILD_URL"),
        job_name: var("JOB_NAME"),
        git_commit: var("GIT_COMMIT"),
    }
}

/// Whoever started the environment: Jenkins' `BUILD_TAG`, else the user.
pub fn default_owner() -> String {
    ["BUILD_TAG", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".into())
}

/// The name of this process's user from `/etc/passwd`, for shells that set no `USER`
/// (cron, `docker exec`, systemd units).
fn user_from_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2) == Some(&uid.as_str())).then(|| fields[0].to_string())
    })
}

/// This machine's host name, as `started-by` labels record it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// `host:pid`, the `started-by` label: who to ask about a start or an update under way.
pub fn started_by() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// This process, as [`crate::lifecycle::process::alive`] recognizes it later.
pub fn process() -> String {
    crate::lifecycle::process::identity()
}
