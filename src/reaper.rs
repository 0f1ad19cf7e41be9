//! The reaper: a tiny companion process that kills every child's process group
//! if the daemon dies without stopping them (SIGKILL, OOM killer, panic=abort).
//!
//! `PR_SET_PDEATHSIG` kills a direct child when the daemon dies, but not the
//! grandchildren that `npx`, `uvx` or a shell script start, which would be
//! orphaned. The daemon starts `stdioproxy __reaper` once, with a pipe on its
//! stdin, and tells it each child's process group (`+<pgid>` / `-<pgid>`
//! lines). When the pipe reaches EOF (the daemon is gone, whatever the cause),
//! the reaper SIGKILLs every group still listed and exits. It ignores SIGINT
//! and SIGTERM so that a Ctrl-C to the terminal or a stop of the service lets
//! the daemon stop children gracefully first; under systemd, `KillMode=mixed`
//! ends it after the daemon exits.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

use nix::sys::signal::{killpg, SigSet, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;

/// The daemon's handle on its reaper.
pub struct Reaper {
    stdin: Mutex<Option<ChildStdin>>,
    _child: Child,
}

impl Reaper {
    /// Starts `<current exe> __reaper`.
    pub fn start() -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("__reaper")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Self {
            stdin: Mutex::new(stdin),
            _child: child,
        })
    }

    /// Registers a process group to kill if the daemon dies.
    pub fn track(&self, pgid: u32) {
        self.send(&format!("+{pgid}\n"));
    }

    /// Forgets a process group (it was stopped and reaped).
    pub fn untrack(&self, pgid: u32) {
        self.send(&format!("-{pgid}\n"));
    }

    fn send(&self, line: &str) {
        let mut guard = self.stdin.lock();
        if let Some(stdin) = guard.as_mut() {
            if stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush())
                .is_err()
            {
                tracing::warn!("the reaper process is gone; children may outlive a crashed daemon");
                *guard = None;
            }
        }
    }
}

/// The reaper process's main loop (`stdioproxy __reaper`). Returns when the
/// daemon's end of the pipe closes, after killing every listed group.
pub fn run() {
    // Blocked, never delivered: the reaper outlives a Ctrl-C or a service
    // stop by design (it has one thread, so the thread's mask is the
    // process's).
    let mut quiet = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        quiet.add(s);
    }
    if let Err(e) = quiet.thread_block() {
        eprintln!("stdioproxy reaper: cannot block SIGINT/SIGTERM/SIGHUP: {e}");
    }
    let mut groups = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, num) = line.split_at(line.len().min(1));
        let Ok(pgid) = num.trim().parse::<i32>() else {
            continue;
        };
        if pgid <= 1 {
            continue;
        }
        match op {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        // A group that is already gone (ESRCH) is fine.
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}
