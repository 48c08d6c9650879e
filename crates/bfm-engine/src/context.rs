//! Who is running bfm, and where.

/// The host name, for run records.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The operating-system user running the CLI.
pub fn executing_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "cli_user".into())
}

/// Whether a process with this id is alive on this host (Linux: `/proc/<pid>` exists).
pub(crate) fn process_alive(pid: i64) -> Option<bool> {
    if cfg!(target_os = "linux") && pid > 0 { Some(std::path::Path::new(&format!("/proc/{pid}")).exists()) } else { None }
}
