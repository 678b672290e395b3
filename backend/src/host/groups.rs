//! Supplementary groups of host processes, from /proc/PID/status: the
//! FUSE header carries only the caller's uid, gid and pid.

use crate::adapter::access::GroupSource;

/// Reads the `Groups:` line of /proc/PID/status.
#[derive(Debug, Default)]
pub struct ProcGroups;

impl GroupSource for ProcGroups {
    fn groups(&self, pid: u32) -> Vec<u32> {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return Vec::new() };
        parse_groups(&status)
    }
}

/// The ids of the `Groups:` line; none when the line is missing (a
/// process that exited: only its primary group then counts).
fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_line_is_parsed() {
        assert_eq!(parse_groups("Name:\tx\nGroups:\t4 24 27 \nNgid:\t0\n"), vec![4, 24, 27]);
        assert_eq!(parse_groups("Groups:\n"), Vec::<u32>::new());
        let mut want = vec![0 as libc::gid_t; 256];
        // SAFETY: getgroups writes at most `want.len()` ids into our buffer.
        let n = unsafe { libc::getgroups(want.len() as i32, want.as_mut_ptr()) };
        assert!(n >= 0);
        want.truncate(n as usize);
        let mut got = ProcGroups.groups(std::process::id());
        got.sort();
        want.sort();
        assert_eq!(got, want, "our own supplementary groups");
    }
}
