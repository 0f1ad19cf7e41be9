//! Processes the benchmark starts, and what /proc says about them.
//!
//! Every process is started from the main thread, in its own process group,
//! with `PR_SET_PDEATHSIG` so that nothing outlives the benchmark even when
//! it is interrupted. [`Proc`] stops what it started (its own process group)
//! when dropped; nothing is ever killed by name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

pub type Res<T> = Result<T, String>;

/// Puts a command in its own process group and ties it to our life.
pub fn own_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0);
    // Safety: prctl is async-signal-safe and touches nothing but the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd
}

/// Stops a process group we created: SIGTERM, then SIGKILL after `grace`.
pub fn stop_group(child: &mut Child, grace: Duration) {
    let pid = child.id() as i32;
    if let Ok(Some(_)) = child.try_wait() {
        // The leader is gone; members of its group may remain.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        return;
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = child.wait();
}

/// Lines of a process's stderr, collected by a thread (and copied to a file).
#[derive(Clone, Default)]
pub struct Log {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Log {
    pub fn collect(&self, stream: impl std::io::Read + Send + 'static, copy: Option<File>) {
        let log = self.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut copy = copy;
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = copy.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let (lines, cv) = &*log.inner;
                if let Ok(mut l) = lines.lock() {
                    l.push(line);
                }
                cv.notify_all();
            }
        });
    }

    /// Waits for a line (from index `from` on) containing `needle`.
    pub fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> Res<String> {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.inner;
        let mut guard = lines.lock().map_err(|_| "log lock poisoned".to_string())?;
        loop {
            if let Some(l) = guard.iter().skip(from).find(|l| l.contains(needle)) {
                return Ok(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                let tail: Vec<&String> = guard.iter().rev().take(15).collect();
                let tail: Vec<&str> = tail.iter().rev().map(|s| s.as_str()).collect();
                return Err(format!(
                    "no log line with {needle:?} within {timeout:?}; last lines:\n{}",
                    tail.join("\n")
                ));
            }
            guard = cv
                .wait_timeout(guard, deadline - now)
                .map_err(|_| "log lock poisoned".to_string())?
                .0;
        }
    }
}

/// A long-running process we started (daemon, socat listener), stopped on
/// drop.
pub struct Proc {
    pub child: Child,
    pub log: Log,
    pub grace: Duration,
}

impl Proc {
    /// Starts `argv` with stderr collected (and copied to `log_path`).
    pub fn start(
        name: &str,
        argv: &[String],
        env: &[(String, String)],
        log_path: &Path,
    ) -> Res<Proc> {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        own_group(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", argv[0]))?;
        let log = Log::default();
        let copy = File::create(log_path).ok();
        if let Some(err) = child.stderr.take() {
            log.collect(err, copy);
        }
        Ok(Proc {
            child,
            log,
            grace: Duration::from_secs(15),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        stop_group(&mut self.child, self.grace);
    }
}

/// Raises the soft fd limit to the hard one (500 sessions need ~1,000 fds).
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Parent pid of every process.
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(stat) = read(&format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses: fields start
        // after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let _state = fields.next();
        if let Some(ppid) = fields.next().and_then(|p| p.parse().ok()) {
            map.insert(pid, ppid);
        }
    }
    map
}

/// `roots` and all their live descendants.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let parents = parents();
    let mut out: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for (&pid, &ppid) in &parents {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
            }
        }
        i += 1;
    }
    out.retain(|p| parents.contains_key(p));
    out
}

/// The process's command line, space-separated.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// CPU time of every live thread of `pid`, in ns (from schedstat, which has
/// ns resolution; /proc/PID/stat has 10 ms ticks).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for t in dir.flatten() {
        let path = t.path().join("schedstat");
        if let Some(v) = std::fs::read_to_string(path).ok().and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        }) {
            total += v;
        }
    }
    total
}

/// CPU of several processes, summed.
pub fn cpu_sum(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| cpu_ns(p)).sum()
}

/// A `Key:   123 kB` field of /proc/PID/status, in KiB.
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let text = read(&format!("/proc/{pid}/status"))?;
    field_kb(&text, key)
}

/// Proportional set size (shared pages split between their users), KiB.
pub fn pss_kb(pid: u32) -> Option<u64> {
    let text = read(&format!("/proc/{pid}/smaps_rollup"))?;
    field_kb(&text, "Pss")
}

fn field_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

/// Threads of a process.
pub fn threads(pid: u32) -> Option<u64> {
    let text = read(&format!("/proc/{pid}/status"))?;
    text.lines().find_map(|l| {
        l.strip_prefix("Threads:")
            .and_then(|v| v.trim().parse().ok())
    })
}
