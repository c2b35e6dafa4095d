//! Reading a child process's output pipes. A child whose pipe fills (64 KiB on Linux) blocks
//! in `write` until someone reads, so each pipe is drained on its own thread for as long as
//! the child writes, whatever the caller does meanwhile (waiting for the other pipe, for a
//! deadline, for an HTTP answer).
//!
//! Two shapes, one owner:
//! - [`drain_lines`]: a long-lived child whose lines are wanted as they come (the extension
//!   under test in [`crate::lambda`], moto's server in [`crate::moto`]);
//! - [`run_to_end`]: a helper command whose whole output is wanted, fed its stdin, killed
//!   after a timeout (`moto_admin.py`, `kpl_deaggregate.py`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Receiver;

/// Reads the child's stderr and stdout (both must be piped) line by line, each on its own
/// thread until the pipe closes or a read fails, handing every line to `on_line` (which
/// therefore runs on those threads). The receiver gets one timestamp per pipe as it closes:
/// two in all, then it is disconnected.
pub fn drain_lines<F>(child: &mut Child, on_line: F) -> Receiver<SystemTime>
where
    F: Fn(String) + Clone + Send + 'static,
{
    let (tx, closed) = crossbeam_channel::unbounded();
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stderr.take().expect("stderr piped")),
        Box::new(child.stdout.take().expect("stdout piped")),
    ];
    for pipe in pipes {
        let (on_line, tx) = (on_line.clone(), tx.clone());
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                on_line(line);
            }
            let _ = tx.send(SystemTime::now());
        });
    }
    closed
}

/// What a command run by [`run_to_end`] did.
#[derive(Debug)]
pub struct Finished {
    /// Its stdout closed within the timeout (else it was killed).
    pub in_time: bool,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Writing the stdin given (`Ok` when none was): a child that exits without reading
    /// it all makes this a broken pipe.
    pub stdin_written: io::Result<()>,
}

impl Finished {
    /// Exited by itself within the timeout, with status 0.
    pub fn ok(&self) -> bool {
        self.in_time && self.status.success()
    }
}

/// Runs `cmd` with its stdout and stderr piped and, when `stdin` is given, that fed to its
/// stdin (otherwise stdin is as `cmd` set it); kills it if its stdout has not closed within
/// `timeout`. `Err` only when it cannot be started or waited for.
pub fn run_to_end(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> io::Result<Finished> {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(input), Some(mut pipe)) => Some(thread::spawn(move || pipe.write_all(&input))),
        _ => None,
    };
    let err_reader = read_all(child.stderr.take(), None);
    let (tx, out_closed) = crossbeam_channel::bounded(1);
    let out_reader = read_all(child.stdout.take(), Some(tx));
    let in_time = out_closed.recv_timeout(timeout).is_ok();
    if !in_time {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let stdin_written = match writer {
        Some(w) => w
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("stdin writer panicked"))),
        None => Ok(()),
    };
    Ok(Finished {
        in_time,
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        stdin_written,
    })
}

/// Reads `pipe` to its end on a thread of its own; says so on `closed` when given.
fn read_all<R: Read + Send + 'static>(
    pipe: Option<R>,
    closed: Option<crossbeam_channel::Sender<()>>,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        if let Some(tx) = closed {
            let _ = tx.send(());
        }
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn drain_lines_reads_both_pipes_past_their_capacity_and_reports_each_close() {
        // 20 000 lines on each pipe (over 100 KiB): more than a pipe holds, so the child only gets to
        // exit if both are drained at once.
        let mut child =
            sh("i=0; while [ $i -lt 20000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        let closed = drain_lines(&mut child, move |l| seen.lock().unwrap().push(l));
        for _ in 0..2 {
            closed
                .recv_timeout(Duration::from_secs(60))
                .expect("a pipe closed");
        }
        assert!(closed.recv().is_err(), "two closes, then disconnected");
        assert!(child.wait().unwrap().success());
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 40_000);
        assert!(lines.iter().any(|l| l == "err19999"));
        assert!(lines.iter().any(|l| l == "out19999"));
    }

    #[test]
    fn run_to_end_feeds_stdin_and_collects_both_pipes() {
        let input = vec![b'x'; 300_000]; // larger than a pipe: fed while the child reads
        let f = run_to_end(
            sh("wc -c; echo done >&2; exit 3"),
            Some(input),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(f.in_time);
        assert_eq!(f.status.code(), Some(3));
        assert!(!f.ok(), "a non-zero status is not ok");
        assert_eq!(String::from_utf8_lossy(&f.stdout).trim(), "300000");
        assert_eq!(f.stderr, b"done\n");
        assert!(f.stdin_written.is_ok());
    }

    #[test]
    fn run_to_end_kills_a_command_that_outlives_its_timeout() {
        let mut cmd = sh("echo started; exec sleep 600");
        cmd.stdin(Stdio::null());
        let f = run_to_end(cmd, None, Duration::from_millis(200)).unwrap();
        assert!(!f.in_time);
        assert!(!f.ok());
        assert!(
            f.status.code().is_none(),
            "killed by a signal: {:?}",
            f.status
        );
        assert_eq!(f.stdout, b"started\n");
    }
}
