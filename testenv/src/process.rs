//! Child processes of the control plane, and making sure none outlives the test binary.
//!
//! Three mechanisms, because a test binary can end in three ways:
//! - normal exit or a failed test (`std::process::exit`): an `atexit` hook stops every process
//!   this crate started (SIGTERM, then SIGKILL), by pid, and removes the temporary directories;
//! - killed (SIGKILL, Ctrl-C): each child was started with `PR_SET_PDEATHSIG(SIGKILL)`, so the
//!   kernel kills it. That signal fires when the *thread* that forked the child ends, and every
//!   Rust test runs on its own short-lived thread, so all children are forked by one dedicated
//!   thread that lives as long as the process;
//! - whatever is left over (the temporary directory of a killed run) is swept at the next start.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard, Once, OnceLock, mpsc},
    time::{Duration, Instant},
};

use crate::Error;

/// Prefix of every temporary directory; followed by the owning process id.
pub(crate) const DIR_PREFIX: &str = "azureml-attach-testenv-";
/// File in the temporary directory listing the pids started for it, one per line.
const PIDS_FILE: &str = "pids";
/// How long a process gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(3);

/// A started control-plane process whose output goes to a log file.
pub(crate) struct Process {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    /// `Some(description)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("exited with {status}")),
            Ok(None) => None,
            Err(err) => Some(format!("cannot be waited for ({err})")),
        }
    }

    /// A start-up error carrying the end of this process's log.
    pub fn failure(&self, reason: impl Into<String>) -> Error {
        Error::Startup {
            component: self.name,
            reason: reason.into(),
            log: self.log.clone(),
            tail: log_tail(&self.log),
        }
    }
}

const GRPC_RETRY_NOISE: &str = "addrConn.createTransport failed";

/// The last lines of a log file (at most 40 lines / 6000 bytes), for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    const LINES: usize = 40;
    const BYTES: usize = 6000;
    let Ok(text) = fs::read(path) else {
        return format!("(cannot read {})", path.display());
    };
    let text = String::from_utf8_lossy(&text);
    // The API server logs a gRPC warning per retry while etcd is not up yet; they would push
    // the interesting lines out of the tail.
    let (noise, lines): (Vec<&str>, Vec<&str>) =
        text.lines().partition(|l| l.contains(GRPC_RETRY_NOISE));
    let mut tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
    if !noise.is_empty() {
        tail.push_str(&format!(
            "\n({} gRPC \"{GRPC_RETRY_NOISE}\" lines omitted)",
            noise.len()
        ));
    }
    if tail.len() > BYTES {
        let cut = tail.len() - BYTES;
        let cut = (cut..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(cut);
        tail = format!("…{}", &tail[cut..]);
    }
    if tail.trim().is_empty() {
        "(empty)".into()
    } else {
        tail
    }
}

/// Starts `program` with `args`, output to `log`, its pid recorded in the registry entry `id`.
pub(crate) fn spawn(
    id: u64,
    name: &'static str,
    order: StopOrder,
    program: &Path,
    args: &[String],
    log: PathBuf,
) -> Result<Process, Error> {
    let out = File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(Error::io(format!("opening {}", log.display())))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // The children must not pick up the developer's cluster.
        .env_remove("KUBECONFIG");
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then nobody would kill us.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
    let child =
        spawn_from_forker(command).map_err(Error::io(format!("starting {}", program.display())))?;
    record_pid(id, child.id() as i32, order);
    tracing::debug!(process = name, pid = child.id(), log = %log.display(), "testenv: started");
    Ok(Process { name, child, log })
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks `command` on the long-lived forker thread (see the module docs for why).
fn spawn_from_forker(command: Command) -> io::Result<Child> {
    static FORKER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let forker = FORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testenv-forker".into())
            .spawn(move || {
                // Lives until the process ends: the Sender is in a static, so recv never fails.
                while let Ok((mut command, reply)) = rx.recv() {
                    let _ = reply.send(command.spawn());
                }
            })
            .map(|_| Mutex::new(tx))
            .unwrap_or_else(|err| panic!("testenv: cannot start the forker thread: {err}"))
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    lock(forker)
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("testenv forker thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("testenv forker thread is gone"))?
}

/// When a process is stopped relative to the others of its control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopOrder {
    /// Stopped first (the API server and the controller manager).
    Early,
    /// Stopped after the others: the API server stops in about a second while etcd answers,
    /// but keeps retrying until killed once etcd is gone.
    Late,
}

/// A temporary directory and the processes started for it, to be cleaned up at exit.
struct Entry {
    id: u64,
    dir: PathBuf,
    pids: Vec<(i32, StopOrder)>,
    keep_dir: bool,
    /// Runs after the processes are stopped and before the directory is removed (the node's
    /// containers, mounts, cgroups and bridge).
    hooks: Vec<Box<dyn Fn() + Send>>,
}

/// Registers `hook` to run when entry `id` is cleaned up, after its processes are stopped
/// (hooks run in the order they were added).
pub(crate) fn add_cleanup(id: u64, hook: Box<dyn Fn() + Send>) {
    if let Some(entry) = lock(&LIVE).iter_mut().find(|e| e.id == id) {
        entry.hooks.push(hook);
    }
}

static LIVE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the data consistent (plain pushes and removes).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Creates a fresh temporary directory and registers it (and later its processes) for cleanup
/// at process exit. Returns the registry id and the directory.
pub(crate) fn create_dir(keep_dir: bool) -> Result<(u64, PathBuf), Error> {
    static NEXT: Mutex<u64> = Mutex::new(0);
    static ATEXIT: Once = Once::new();
    static SWEEP: Once = Once::new();

    let root = std::env::temp_dir();
    SWEEP.call_once(|| sweep_stale(&root));
    // SAFETY: registering a plain extern "C" function.
    ATEXIT.call_once(|| unsafe {
        libc::atexit(cleanup_at_exit);
    });

    let id = {
        let mut next = lock(&NEXT);
        *next += 1;
        *next
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = root.join(format!(
        "{DIR_PREFIX}{}-{id}-{nanos:08x}",
        std::process::id()
    ));
    fs::create_dir(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    lock(&LIVE).push(Entry {
        id,
        dir: dir.clone(),
        pids: Vec::new(),
        keep_dir,
        hooks: Vec::new(),
    });
    Ok((id, dir))
}

fn record_pid(id: u64, pid: i32, order: StopOrder) {
    let mut live = lock(&LIVE);
    if let Some(entry) = live.iter_mut().find(|e| e.id == id) {
        entry.pids.push((pid, order));
        // Written down so the sweep of a killed run can find stragglers.
        if let Ok(mut file) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(entry.dir.join(PIDS_FILE))
        {
            let _ = writeln!(file, "{pid}");
        }
    }
}

/// Stops the processes of entry `id` and removes its directory (unless kept). Idempotent.
pub(crate) fn cleanup(id: u64) {
    let entry = {
        let mut live = lock(&LIVE);
        let Some(index) = live.iter().position(|e| e.id == id) else {
            return;
        };
        live.swap_remove(index)
    };
    cleanup_entry(&entry);
}

fn cleanup_entry(entry: &Entry) {
    stop_in_order(std::slice::from_ref(entry));
    run_hook(entry);
    remove_dir(entry);
}

fn run_hook(entry: &Entry) {
    for hook in &entry.hooks {
        hook();
    }
}

/// Stops the processes of `entries`, all [`StopOrder::Early`] ones together, then the rest.
fn stop_in_order(entries: &[Entry]) {
    for order in [StopOrder::Early, StopOrder::Late] {
        let pids: Vec<i32> = entries
            .iter()
            .flat_map(|e| e.pids.iter())
            .filter(|(_, o)| *o == order)
            .map(|(pid, _)| *pid)
            .collect();
        stop_pids(&pids);
    }
}

fn remove_dir(entry: &Entry) {
    if entry.keep_dir {
        eprintln!(
            "testenv: kept {} (AZUREML_ATTACH_TESTENV_KEEP)",
            entry.dir.display()
        );
    } else {
        let _ = fs::remove_dir_all(&entry.dir);
    }
}

extern "C" fn cleanup_at_exit() {
    // try_lock: a thread that held the lock when exit() was called will never release it.
    let entries = match LIVE.try_lock() {
        Ok(mut live) => std::mem::take(&mut *live),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => {
            std::mem::take(&mut *poisoned.into_inner())
        }
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    // All control planes together, so the grace periods overlap.
    stop_in_order(&entries);
    entries.iter().for_each(run_hook);
    entries.iter().for_each(remove_dir);
}

/// SIGTERM to every pid, up to [`GRACE`] for them to exit, then SIGKILL; reaps them all.
/// The pids are our own children, so they cannot be reused before we reap them.
fn stop_pids(pids: &[i32]) {
    let mut running: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|pid| reap(*pid, false).is_none())
        .collect();
    for pid in &running {
        // SAFETY: plain syscall on a pid we own.
        unsafe { libc::kill(*pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + GRACE;
    while !running.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        running.retain(|pid| reap(*pid, false).is_none());
    }
    for pid in running {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reap(pid, true);
    }
}

/// `Some(())` if the child `pid` has exited (or is not our child any more) and is now reaped.
fn reap(pid: i32, block: bool) -> Option<()> {
    let mut status = 0;
    // SAFETY: plain syscall.
    let r = unsafe { libc::waitpid(pid, &mut status, if block { 0 } else { libc::WNOHANG }) };
    // 0: still running; -1 (ECHILD): already reaped, e.g. by Child::try_wait.
    if r == 0 { None } else { Some(()) }
}

/// Removes directories left by test binaries that were killed, after killing any process still
/// running from them (a process counts only if its command line names that directory, so a
/// reused pid is never hit).
fn sweep_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if owner as u32 == std::process::id() || process_alive(owner) {
            continue;
        }
        let dir = entry.path();
        let pids = fs::read_to_string(dir.join(PIDS_FILE)).unwrap_or_default();
        for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(dir.to_string_lossy().as_ref()) {
                // SAFETY: plain syscall; the pid was verified to be one of ours above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines_and_drops_grpc_retry_noise() {
        let dir = std::env::temp_dir().join(format!("testenv-log-tail-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("x.log");
        let mut text: String = (1..=50).map(|i| format!("line {i}\n")).collect();
        text.push_str("W1127 grpc: addrConn.createTransport failed to connect\n");
        text.push_str("E1127 the real error\n");
        fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        fs::remove_dir_all(&dir).unwrap();
        assert!(!tail.contains("line 11\n"), "{tail}");
        assert!(tail.starts_with("line 12\n"), "{tail}");
        assert!(
            tail.contains("line 50\nE1127 the real error\n(1 gRPC"),
            "{tail}"
        );
    }
}
