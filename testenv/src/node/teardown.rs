//! Removing a node: what containerd left behind (shims, containers), mounts, cgroups, bridge.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use super::BRIDGE;

/// After the processes are stopped: kills what containerd left (shims and containers, found by
/// the node's directory in their command line and by the node's cgroups), unmounts everything
/// under the directory, removes the cgroups and the bridge.
pub(super) fn teardown(dir: &Path, cgroup_root: &str) {
    let dir_text = dir.to_string_lossy().into_owned();
    let controllers: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(cgroup_root.trim_start_matches('/')))
        .filter(|p| p.is_dir())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pids = Vec::new();
        for proc_entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = proc_entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = fs::read(proc_entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&dir_text) {
                pids.push(pid);
            }
        }
        for controller in &controllers {
            collect_cgroup_pids(controller, &mut pids);
        }
        pids.retain(|pid| *pid as u32 != std::process::id());
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in &pids {
            // SAFETY: plain syscall; the pid is in the node's cgroups or names its directory.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    unmount_under(dir);
    for controller in &controllers {
        remove_cgroups(controller);
    }
    let _ = Command::new("ip")
        .args(["link", "del", BRIDGE])
        .stderr(std::process::Stdio::null())
        .status();
}

pub(super) fn collect_cgroup_pids(cgroup: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(cgroup.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for child in fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if child.path().is_dir() {
            collect_cgroup_pids(&child.path(), pids);
        }
    }
}

fn remove_cgroups(cgroup: &Path) {
    for child in fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if child.path().is_dir() {
            remove_cgroups(&child.path());
        }
    }
    let _ = fs::remove_dir(cgroup);
}

/// Unmounts (lazily) every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_point)
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        if let Ok(path) = std::ffi::CString::new(point) {
            // SAFETY: umount2(2) with a valid C string.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_point(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount_point(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_point("/plain"), "/plain");
    }
}
