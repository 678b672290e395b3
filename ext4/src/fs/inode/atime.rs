//! Access times: the mount's atime policy (relatime, strictatime,
//! noatime, nodiratime) with the kernel's rules (`atime_needs_update`,
//! `relatime_need_update` in fs/inode.c), and the pending atimes that make
//! reads cost no journal transaction.
//!
//! A read decides in memory whether the inode's atime moves
//! ([`Ext4::touch_atime`]). A new atime is only *pending*: kept in
//! [`PendingAtimes`] (per inode, at most [`PENDING_LIMIT`] inodes) and laid
//! over every inode read ([`Ext4::read_inode`], `read_inode_in`), so stat
//! shows it at once and any operation that rewrites the inode writes it
//! along. [`Ext4::flush_atimes`] writes the rest into the running
//! transaction (a handle, no commit of its own) at the commit timer's tick,
//! fsync, sync and close, or when the set is full: N reads cost no
//! transaction until a commit that happens anyway.
//!
//! Freeing or allocating an inode number, and setting an atime explicitly,
//! forget its pending atime, so a deleted file's pending atime is never
//! written over a freed or reused record. A read-only file system keeps
//! no pending atimes (as the kernel's `IS_NOATIME` on `SB_RDONLY`).
//!
//! Lock: each shard of [`PendingAtimes`] is a leaf lock (see "Lock order"
//! in docs/ARCHITECTURE.md): taken with or without a handle open, and
//! nothing is taken while it is held.

use crate::disk::inode::{FL_NOATIME, Inode, Timestamp};
use crate::error::{Error, Result};
use crate::fs::Ext4;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// When a read moves a file's atime (the mount's `relatime`,
/// `strictatime`, `noatime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AtimePolicy {
    /// Only when the atime is not after the mtime or ctime, or is a day
    /// old or more: the kernel's default.
    #[default]
    Relatime,
    /// On every read.
    Strictatime,
    /// Never.
    Noatime,
}

/// The mount's atime options: a policy and, separately, `nodiratime`
/// (directories' atimes never move). Written and parsed as mount option
/// words: `relatime`, `strictatime,nodiratime`, `noatime`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtimeOptions {
    /// When a read moves the atime.
    pub policy: AtimePolicy,
    /// Reading a directory never moves its atime.
    pub nodiratime: bool,
}

impl FromStr for AtimeOptions {
    type Err = String;

    /// Comma-separated words: at most one of `relatime`, `strictatime`,
    /// `noatime`, and `nodiratime` (`diratime` undoes it).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut opts = AtimeOptions::default();
        let mut policy = None;
        for word in s.split(',').filter(|w| !w.is_empty()) {
            let p = match word {
                "relatime" => AtimePolicy::Relatime,
                "strictatime" => AtimePolicy::Strictatime,
                "noatime" => AtimePolicy::Noatime,
                "nodiratime" => {
                    opts.nodiratime = true;
                    continue;
                }
                "diratime" => {
                    opts.nodiratime = false;
                    continue;
                }
                _ => {
                    return Err(format!(
                        "unknown atime option {word:?}: use relatime, strictatime or noatime, optionally with ,nodiratime"
                    ));
                }
            };
            if policy.is_some_and(|q| q != p) {
                return Err(format!("atime options {s:?} name two policies"));
            }
            policy = Some(p);
        }
        opts.policy = policy.unwrap_or_default();
        Ok(opts)
    }
}

impl std::fmt::Display for AtimeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.policy {
            AtimePolicy::Relatime => "relatime",
            AtimePolicy::Strictatime => "strictatime",
            AtimePolicy::Noatime => "noatime",
        };
        f.write_str(p)?;
        if self.nodiratime {
            f.write_str(",nodiratime")?;
        }
        Ok(())
    }
}

/// Most inodes with a pending atime; one more makes the reader write them
/// all ([`Ext4::flush_atimes`]) into the running transaction.
pub const PENDING_LIMIT: usize = 4096;

const SHARDS: usize = 16;

/// One shard: pending atimes of the inodes that hash to it, and how often
/// one was forgotten (a decision taken before a forget is not recorded).
#[derive(Default)]
struct Shard {
    atimes: HashMap<u32, Timestamp>,
    forgets: u64,
}

/// Atimes decided but not yet written, per inode. Sharded so that readers
/// of different inodes rarely meet on one lock; an atomic count lets inode
/// reads skip the lock when nothing is pending.
#[derive(Default)]
pub struct PendingAtimes {
    shards: [Mutex<Shard>; SHARDS],
    count: AtomicUsize,
}

impl PendingAtimes {
    fn shard(&self, ino: u32) -> MutexGuard<'_, Shard> {
        self.shards[ino as usize % SHARDS].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of inodes with a pending atime.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether no atime is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pending atime of `ino`, if any.
    pub fn get(&self, ino: u32) -> Option<Timestamp> {
        if self.is_empty() {
            return None;
        }
        self.shard(ino).atimes.get(&ino).copied()
    }

    /// The forget count of `ino`'s shard: pass it to `record`.
    fn forgets(&self, ino: u32) -> u64 {
        self.shard(ino).forgets
    }

    /// Records `t` as `ino`'s atime unless an atime of its shard was
    /// forgotten since `forgets` was read (the inode may be gone).
    /// Returns the number pending afterwards, or `None` if not recorded.
    fn record(&self, ino: u32, t: Timestamp, forgets: u64) -> Option<usize> {
        let mut s = self.shard(ino);
        if s.forgets != forgets {
            return None;
        }
        if s.atimes.insert(ino, t).is_none() {
            return Some(self.count.fetch_add(1, Ordering::AcqRel) + 1);
        }
        Some(self.len())
    }

    /// Drops `ino`'s pending atime: the inode is freed, reused, or its
    /// atime set explicitly.
    pub fn forget(&self, ino: u32) {
        let mut s = self.shard(ino);
        s.forgets += 1;
        if s.atimes.remove(&ino).is_some() {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Drops `ino`'s pending atime if it is still `t` (written home).
    fn written(&self, ino: u32, t: Timestamp) {
        let mut s = self.shard(ino);
        if s.atimes.get(&ino) == Some(&t) {
            s.atimes.remove(&ino);
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Every pending atime, sorted by inode (neighbours share a block).
    fn snapshot(&self) -> Vec<(u32, Timestamp)> {
        let mut all: Vec<(u32, Timestamp)> = Vec::with_capacity(self.len());
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(s.atimes.iter().map(|(i, t)| (*i, *t)));
        }
        all.sort_unstable_by_key(|(i, _)| *i);
        all
    }
}

impl std::fmt::Debug for PendingAtimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAtimes").field("len", &self.len()).finish()
    }
}

/// Sets `inode`'s atime to `t` (in memory).
pub fn set_atime(inode: &mut Inode, t: Timestamp) {
    let (s, x) = t.encode();
    inode.raw.atime = s;
    inode.raw.atime_extra = x;
}

/// The kernel's `relatime_need_update`: the atime is not after the mtime
/// or the ctime, or is at least a day older than `now`.
pub fn relatime_needs_update(inode: &Inode, now: Timestamp) -> bool {
    let atime = inode.atime();
    inode.mtime() >= atime || inode.ctime() >= atime || now.secs - atime.secs >= 24 * 60 * 60
}

impl Ext4 {
    /// The atime options this file system was opened with.
    pub fn atime_options(&self) -> AtimeOptions {
        self.atime
    }

    /// The pending atimes (for tests and statistics).
    pub fn pending_atimes(&self) -> &PendingAtimes {
        &self.atimes
    }

    /// Lays `ino`'s pending atime over `inode` as just read.
    pub(crate) fn overlay_atime(&self, inode: &mut Inode) {
        if let Some(t) = self.atimes.get(inode.ino) {
            set_atime(inode, t);
        }
    }

    /// A read of inode `ino` (file data, a directory listing, a symlink's
    /// target) happened: moves its atime to now where the policy says so,
    /// as the kernel's `touch_atime`. The new atime is pending (visible to
    /// every inode read at once, written later: see the module doc), so
    /// this costs no transaction unless the pending set is full. Returns
    /// whether the atime moved. Nothing happens on a read-only file
    /// system, under `noatime`, for a `chattr +A` (`FL_NOATIME`) inode, or
    /// for a directory under `nodiratime`. Take no inode I/O lock around
    /// it: a full set takes a handle. The caller holds a reference on the
    /// inode, as for any I/O.
    pub fn touch_atime(&self, ino: u32) -> Result<bool> {
        if self.is_read_only() || self.atime.policy == AtimePolicy::Noatime {
            return Ok(false);
        }
        let forgets = self.atimes.forgets(ino);
        let inode = self.read_inode(ino)?;
        if inode.file_type().is_none() || inode.flags() & FL_NOATIME != 0 || self.atime.nodiratime && inode.is_dir() {
            return Ok(false);
        }
        // The record's precision: whole seconds without the _extra field.
        let mut probe = inode.clone();
        set_atime(&mut probe, Timestamp::now());
        probe.fit_times();
        let now = probe.atime();
        if self.atime.policy == AtimePolicy::Relatime && !relatime_needs_update(&inode, now) {
            return Ok(false);
        }
        if inode.atime() == now {
            return Ok(false);
        }
        match self.atimes.record(ino, now, forgets) {
            None => Ok(false),
            Some(n) => {
                if n > PENDING_LIMIT {
                    self.flush_atimes()?;
                }
                Ok(true)
            }
        }
    }

    /// Writes every pending atime into the running transaction (in as few
    /// handles as the log allows; no commit). Runs before the commit
    /// timer's commit, fsync, sync and close, and when the set is full. An
    /// inode that can no longer be read is logged and its atime dropped:
    /// an atime never fails an fsync.
    pub fn flush_atimes(&self) -> Result<()> {
        // After a shutdown nothing is written: pending atimes are lost, as
        // in a crash (and the commit timer has nothing to complain about).
        if self.atimes.is_empty() || self.is_shut_down() {
            return Ok(());
        }
        let tx = self.tx()?;
        let per_handle = tx.max_handle_blocks().max(2) - 1;
        let pending = self.atimes.snapshot();
        let mut rest = pending.as_slice();
        while !rest.is_empty() {
            let mut h = self.begin()?;
            let mut done = 0;
            for &(ino, t) in rest {
                if h.staged() >= per_handle {
                    break;
                }
                done += 1;
                match self.read_inode_in(&h, ino) {
                    Ok(mut inode) if inode.file_type().is_some() => {
                        set_atime(&mut inode, t);
                        self.write_inode(&mut h, &mut inode)?;
                    }
                    Ok(_) => {}
                    Err(e @ (Error::Corrupt { .. } | Error::Checksum { .. } | Error::InvalidArgument(_))) => {
                        log::warn!("atime of inode {ino} dropped: {e}");
                    }
                    Err(e) => return Err(e),
                }
            }
            h.finish();
            for &(ino, t) in &rest[..done] {
                self.atimes.written(ino, t);
            }
            rest = &rest[done..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_print_as_mount_words() {
        let p = |s: &str| s.parse::<AtimeOptions>();
        assert_eq!(p("relatime").unwrap(), AtimeOptions::default());
        assert_eq!(p("").unwrap(), AtimeOptions::default());
        assert_eq!(
            p("strictatime,nodiratime").unwrap(),
            AtimeOptions { policy: AtimePolicy::Strictatime, nodiratime: true }
        );
        assert_eq!(p("noatime").unwrap().policy, AtimePolicy::Noatime);
        assert_eq!(p("nodiratime").unwrap(), AtimeOptions { policy: AtimePolicy::Relatime, nodiratime: true });
        assert!(p("noatime,strictatime").unwrap_err().contains("two policies"));
        assert!(p("lazytime").unwrap_err().contains("lazytime"));
        for s in ["relatime", "strictatime", "noatime,nodiratime"] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn relatime_rules_are_the_kernels() {
        let mut inode = Inode::parse(12, &[0u8; 256], None).unwrap();
        inode.raw.extra_isize = 32;
        let at = |secs| Timestamp { secs, nsecs: 0 };
        let set = |inode: &mut Inode, a: i64, m: i64, c: i64| {
            set_atime(inode, at(a));
            (inode.raw.mtime, inode.raw.ctime) = (m as u32, c as u32);
        };
        let now = at(1_000_000);
        // atime after mtime and ctime, less than a day old: no update.
        set(&mut inode, 999_000, 998_000, 998_000);
        assert!(!relatime_needs_update(&inode, now));
        // atime equal to mtime, or to ctime: update.
        set(&mut inode, 999_000, 999_000, 998_000);
        assert!(relatime_needs_update(&inode, now));
        set(&mut inode, 999_000, 998_000, 999_000);
        assert!(relatime_needs_update(&inode, now));
        // Exactly a day old: update; a second less: not.
        set(&mut inode, 1_000_000 - 86_400, 0, 0);
        assert!(relatime_needs_update(&inode, now));
        set(&mut inode, 1_000_000 - 86_399, 0, 0);
        assert!(!relatime_needs_update(&inode, now));
    }

    #[test]
    fn a_forget_between_decision_and_record_wins() {
        let p = PendingAtimes::default();
        let t = Timestamp { secs: 5, nsecs: 0 };
        let f = p.forgets(7);
        p.forget(7);
        assert_eq!(p.record(7, t, f), None);
        assert!(p.is_empty());
        let f = p.forgets(7);
        assert_eq!(p.record(7, t, f), Some(1));
        assert_eq!(p.record(7, t, f), Some(1));
        assert_eq!(p.get(7), Some(t));
        p.written(7, Timestamp { secs: 6, nsecs: 0 });
        assert_eq!(p.get(7), Some(t), "a newer atime stays pending");
        p.written(7, t);
        assert!(p.is_empty() && p.get(7).is_none());
    }
}
