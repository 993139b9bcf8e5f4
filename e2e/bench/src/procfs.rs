//! What the server costs, read from `/proc`: resident memory, CPU time (utime + stime) and the
//! kernel's socket memory. Parsers are pure and tested on sample text.

use std::path::PathBuf;

use serde::Serialize;

#[cfg(test)]
mod tests;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected format in {0}")]
    Format(&'static str),
}

fn read(path: PathBuf) -> Result<String, ProcError> {
    std::fs::read_to_string(&path).map_err(|source| ProcError::Read { path, source })
}

/// Clock ticks of `/proc/PID/stat` per second. Linux reports USER_HZ, which is 100 on every
/// mainstream architecture; `getconf CLK_TCK` confirms it when available.
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

/// (utime, stime) in ticks from the text of `/proc/PID/stat`. The command name may hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Result<(u64, u64), ProcError> {
    let rest = text.rsplit_once(')').ok_or(ProcError::Format("stat"))?.1;
    // After ")": state is field 3, so utime (14) and stime (15) are the 12th and 13th here.
    let mut fields = rest.split_whitespace().skip(11);
    let mut next = || -> Result<u64, ProcError> {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or(ProcError::Format("stat"))
    };
    Ok((next()?, next()?))
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32, ticks: u64) -> Result<f64, ProcError> {
    let (user, system) = cpu_split(pid, ticks)?;
    Ok(user + system)
}

/// CPU seconds the process has used so far in user mode and in the kernel (its syscalls, and
/// on loopback the receivers' TCP work the kernel runs in the sender's context): where the
/// time went, at the coarsest grain.
pub fn cpu_split(pid: u32, ticks: u64) -> Result<(f64, f64), ProcError> {
    let (u, s) = parse_stat(&read(PathBuf::from(format!("/proc/{pid}/stat")))?)?;
    Ok((u as f64 / ticks as f64, s as f64 / ticks as f64))
}

/// `VmRSS` in bytes from the text of `/proc/PID/status`.
pub fn parse_rss(text: &str) -> Result<u64, ProcError> {
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or(ProcError::Format("status"))
}

pub fn rss_bytes(pid: u32) -> Result<u64, ProcError> {
    parse_rss(&read(PathBuf::from(format!("/proc/{pid}/status")))?)
}

/// `VmHWM` (peak resident memory) in bytes from the text of `/proc/PID/status`.
pub fn parse_peak_rss(text: &str) -> Result<u64, ProcError> {
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or(ProcError::Format("status"))
}

/// Peak resident memory since the process started or since [`reset_peak_rss`].
pub fn peak_rss_bytes(pid: u32) -> Result<u64, ProcError> {
    parse_peak_rss(&read(PathBuf::from(format!("/proc/{pid}/status")))?)
}

/// Resets the process's `VmHWM` to its current RSS, so a later [`peak_rss_bytes`] is the peak
/// of what happened in between. Writing `5` to `/proc/PID/clear_refs` does that (Linux 4.0+,
/// proc(5): "Reset the peak resident set size ("high water mark") to the process's current
/// resident set size value"); it needs the right to write there (same user or root).
pub fn reset_peak_rss(pid: u32) -> Result<(), ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/clear_refs"));
    std::fs::write(&path, "5").map_err(|source| ProcError::Read { path, source })
}

/// The TCP line of `/proc/net/sockstat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sockstat {
    pub tcp_inuse: u64,
    /// Pages of memory the kernel holds for TCP buffers (system-wide).
    pub tcp_mem_pages: u64,
}

impl Sockstat {
    /// Bytes, with 4 KiB pages (the page size on every machine this runs on).
    pub fn tcp_mem_bytes(&self) -> u64 {
        self.tcp_mem_pages * 4096
    }
}

pub fn parse_sockstat(text: &str) -> Result<Sockstat, ProcError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .ok_or(ProcError::Format("sockstat"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| -> Result<u64, ProcError> {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1))
            .and_then(|v| v.parse().ok())
            .ok_or(ProcError::Format("sockstat"))
    };
    Ok(Sockstat {
        tcp_inuse: field("inuse")?,
        tcp_mem_pages: field("mem")?,
    })
}

pub fn sockstat() -> Result<Sockstat, ProcError> {
    parse_sockstat(&read(PathBuf::from("/proc/net/sockstat"))?)
}
