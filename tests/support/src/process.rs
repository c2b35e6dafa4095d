//! Process control and readings for the sandbox (Linux): freezing the extension with
//! signals, telling that it exited without reaping it, pinning threads to cores, and
//! its peak RSS and CPU time.
//!
//! CPU time comes in three resolutions: [`exit_cpu`] (the kernel's own total for an exited,
//! unreaped child, all threads, in microseconds: what the sandbox reports),
//! [`cpu_time_live`] (nanosecond run time of each live thread, summed: for spans of a
//! running process, missing threads that ended meanwhile) and [`cpu_time`] (`/proc/<pid>/stat`
//! in clock ticks, 10 ms).
//!
//! Most of the crate's `unsafe` code (the other is `tcp::set_backlog`): thin calls into libc, each with its `SAFETY` note.
#![allow(unsafe_code)]

use std::thread;
use std::time::Duration;

/// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the whole process, all threads.
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) with a pid we spawned and still own (not reaped yet).
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// Whether the child has exited, without reaping it (so that its owner still collects
/// its status).
pub fn exited_unreaped(pid: u32) -> bool {
    exit_cpu(pid).is_some()
}

/// The CPU time (user + system, every thread) of a child that has exited and is not reaped
/// yet; `None` while it runs. The kernel's own total, to the microsecond: Linux's `waitid`
/// system call takes a fifth argument, a `struct rusage` it fills for the child even with
/// `WNOWAIT` (which the libc wrapper does not expose), so the child stays unreaped.
pub fn exit_cpu(pid: u32) -> Option<Duration> {
    // SAFETY: zeroed siginfo_t and rusage are valid out-parameters; both outlive the call.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::syscall(
            libc::SYS_waitid,
            libc::P_PID,
            pid as libc::id_t,
            &mut info as *mut libc::siginfo_t,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            &mut usage as *mut libc::rusage,
        )
    };
    // SAFETY: si_pid is set by waitid (0 when no child has changed state).
    if r != 0 || unsafe { info.si_pid() } == 0 {
        return None;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// CPU time of a live process: the run time of each of its current threads
/// (`/proc/<pid>/task/*/schedstat`, nanoseconds), summed. Threads that ended are missing.
pub fn cpu_time_live(pid: u32) -> Option<Duration> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for e in dir.flatten() {
        let stat = std::fs::read_to_string(e.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(Duration::from_nanos(total))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn exit_cpu_reads_an_exited_child_without_reaping_it() {
        let mut child = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(cpu_time_live(pid).is_some());
        let (_tx, never) = crossbeam_channel::bounded::<()>(0);
        let cpu = loop {
            if let Some(c) = exit_cpu(pid) {
                break c;
            }
            let _ = never.recv_timeout(Duration::from_millis(2));
        };
        let ticks = cpu_time(pid).expect("a zombie keeps its /proc/<pid>/stat");
        assert!(cpu > Duration::ZERO);
        let diff = cpu.abs_diff(ticks);
        assert!(diff <= Duration::from_millis(20), "{cpu:?} vs {ticks:?}");
        assert!(
            exit_cpu(pid).is_some(),
            "still unreaped: asking again works"
        );
        assert!(child.wait().unwrap().success(), "its owner still reaps it");
    }
}
