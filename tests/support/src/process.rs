//! Process control and readings for the sandbox (Linux): freezing the extension with
//! signals, telling that it exited without reaping it, pinning threads to cores, and
//! its peak RSS and CPU time from `/proc`.
//!
//! The crate's only `unsafe` code: thin calls into libc, each with its `SAFETY` note.
#![allow(unsafe_code)]

use std::thread;
use std::time::Duration;

/// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the whole process, all threads.
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) with a pid we spawned and still own (not reaped yet).
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// Whether the child has exited, without reaping it (so `/proc/<pid>/stat` still holds
/// its final CPU times).
pub fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r == 0 && unsafe { info.si_pid() } != 0
}

/// `VmHWM` (peak resident set) of a live process, in kB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU time of a process (also of an unreaped zombie).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// Pins thread `tid` (0: the calling thread) to one core.
pub fn pin_thread(tid: i32, core: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays within its bounds for
    // core < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Pins every current thread of this process to one core (new threads inherit it).
pub fn pin_own_threads(core: usize) {
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                pin_thread(tid, core);
            }
        }
    }
}

/// Cores available to this process.
pub fn cores() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}
