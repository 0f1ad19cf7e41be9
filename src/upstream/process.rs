//! Spawning and stopping one child process.
//!
//! Each child runs in its own process group (so grandchildren spawned by npx,
//! uvx or a shell are signalled with it), with the configured env on top of the
//! daemon's minus the service manager's variables, and with
//! `PR_SET_PDEATHSIG` so that it dies even when the daemon is SIGKILLed.
//! Stopping is: close stdin, wait `grace`, SIGTERM the group, wait 2s, SIGKILL
//! the group, and reap.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::prctl::set_pdeathsig;
use nix::sys::resource::{getrlimit, rlim_t, setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getpid, getppid, Pid};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use crate::config::{expand_env_table_with, ServerConfig};

/// A freshly spawned child with its pipes.
pub struct Spawned {
    /// The process (its pid is also its process group id).
    pub child: Child,
    /// Pid.
    pub pid: u32,
    /// Its stdin (taken by the connection).
    pub stdin: Option<ChildStdin>,
    /// Its stdout (taken by the connection).
    pub stdout: Option<ChildStdout>,
    /// Its stderr (taken by the log capture).
    pub stderr: Option<ChildStderr>,
}

/// Spawns the server's process. Errors are one line a person can act on.
/// `workspace` is the working directory of a per-workspace instance (when
/// the server sets no `cwd`); `vars` (`STDIOPROXY_INSTANCE`, ...) are set in
/// the child's environment and may be used in its configured env values.
pub fn spawn(
    spec: &ServerConfig,
    workspace: Option<&std::path::Path>,
    vars: &[(&str, String)],
) -> Result<Spawned, String> {
    let env = expand_env_table_with(&spec.env, vars)?;
    // A bare name not on PATH may be a program installed next to stdioproxy.
    let mut cmd = Command::new(crate::paths::resolve_program(&spec.command.0));
    cmd.args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(crate::systemd::is_service_manager_var)
        {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.envs(env);
    if let Some(cwd) = spec
        .cwd_path()
        .or_else(|| workspace.map(std::path::Path::to_path_buf))
    {
        if !cwd.is_dir() {
            return Err(format!("cwd {cwd:?} is not a directory"));
        }
        cmd.current_dir(cwd);
    }
    let inherited_nofile = INHERITED_NOFILE.get().copied();
    let parent = getpid();
    // Safety: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setrlimit, prctl, getppid) and builds
    // errors from an errno, without allocating.
    unsafe {
        cmd.pre_exec(move || {
            // Children get the fd limit the daemon was started with, not the
            // one it raised for itself (some programs walk every fd up to
            // the limit).
            if let Some((soft, hard)) = inherited_nofile {
                let _ = setrlimit(Resource::RLIMIT_NOFILE, soft, hard);
            }
            set_pdeathsig(Signal::SIGKILL)?;
            // The daemon may have died between fork and prctl: then the
            // child does not exec (spawn fails with ESRCH).
            if getppid() != parent {
                return Err(Errno::ESRCH.into());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", spec.command.0))?;
    let pid = child
        .id()
        .ok_or("child exited before it could be tracked")?;
    Ok(Spawned {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        pid,
    })
}

/// The fd limit the daemon was started with, restored in its children.
static INHERITED_NOFILE: std::sync::OnceLock<(rlim_t, rlim_t)> = std::sync::OnceLock::new();

/// Raises the daemon's own soft limit on open files to the hard limit (each
/// session is a socket; systemd's default soft limit is 1024), remembering
/// the original for children. Call once, before any child is spawned.
pub fn raise_fd_limit() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard {
        return;
    }
    let raised = hard.min(1 << 20);
    if setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
        let _ = INHERITED_NOFILE.set((soft, hard));
        tracing::debug!(from = soft, to = raised, "raised the open-file limit");
    }
}

/// Sends `signal` to the process group led by `pid`; a group that is already
/// gone is not an error.
pub fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, %signal, "cannot signal process group: {e}"),
    }
}

/// Waits for the child after its stdin was closed: `grace`, then SIGTERM to
/// the group, 2s, then SIGKILL to the group. Always ends with SIGKILL to the
/// group so grandchildren that outlived the leader do not linger.
pub async fn stop(child: &mut Child, pid: u32, grace: Duration) -> Option<ExitStatus> {
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(r) => r.ok(),
        Err(_) => {
            signal_group(pid, Signal::SIGTERM);
            match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(r) => r.ok(),
                Err(_) => {
                    signal_group(pid, Signal::SIGKILL);
                    child.wait().await.ok()
                }
            }
        }
    };
    signal_group(pid, Signal::SIGKILL);
    status
}

/// Kills the whole group at once and reaps the leader (for a crashed or hung
/// child, where a grace period buys nothing).
pub async fn kill(child: &mut Child, pid: u32) -> Option<ExitStatus> {
    signal_group(pid, Signal::SIGKILL);
    child.wait().await.ok()
}

/// "exit status 3", "killed by SIGKILL".
pub fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "unknown exit status".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(sig) => format!("killed by {sig}"),
                Err(_) => format!("killed by signal {sig}"),
            },
            _ => "unknown exit status".into(),
        },
    }
}
