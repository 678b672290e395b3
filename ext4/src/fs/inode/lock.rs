//! Per-inode I/O locks: the core's `i_rwsem`.
//!
//! File data moves between the image and the caller's buffers with no
//! journal handle open (positional reads and writes of data blocks), so the
//! single handle lock cannot keep a data transfer and a change of the same
//! file's mapping apart. Without this lock a write that looked up its block,
//! then paused, could land in a block that a concurrent truncate freed and
//! another file took; a read could return another file's bytes the same way,
//! and two sub-block fills of one unwritten block could overwrite each other.
//!
//! The rule, as the kernel's ext4 has it with `inode_lock`:
//! - **shared** for reading file data (`Ext4::read`): any number at once;
//! - **exclusive** for everything that changes which blocks back a file or
//!   writes its data: write, truncate, fallocate in every mode, the inline
//!   conversion, DAX map setup and the release of an unlinked inode.
//!
//! Lock order (docs/ARCHITECTURE.md): inode locks are taken **before** a
//! journal handle ([`crate::journal::transaction::TxManager::begin`]), never
//! while one is open; an operation takes at most one inode lock. Operations
//! on an inode require the caller to hold a reference to it
//! ([`crate::fs::Ext4::open_inode`]), as the kernel's VFS holds an inode
//! reference for every I/O: an inode nobody holds can be freed by the
//! removal of its last name without this lock.
//!
//! Waiting writers block new readers (no writer starvation). The table holds
//! entries only for inodes that are locked or waited for.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

const SHARDS: usize = 64;

/// State of one inode's lock; present only while someone holds or waits.
#[derive(Debug, Default)]
struct State {
    readers: u32,
    writer: bool,
    waiting_writers: u32,
    waiting_readers: u32,
}

impl State {
    fn idle(&self) -> bool {
        self.readers == 0 && !self.writer && self.waiting_writers == 0 && self.waiting_readers == 0
    }
}

#[derive(Default)]
struct Shard {
    states: Mutex<HashMap<u32, State>>,
    changed: Condvar,
}

/// The per-inode read/write locks of one open file system.
pub struct InodeLocks {
    shards: Vec<Shard>,
}

impl Default for InodeLocks {
    fn default() -> Self {
        InodeLocks { shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }
}

impl std::fmt::Debug for InodeLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InodeLocks").field("waiters", &self.waiters()).finish()
    }
}

/// Which way an inode is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Readers of file data.
    Shared,
    /// Writers of file data and changers of the mapping.
    Exclusive,
}

/// A held inode lock; released on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct InodeGuard<'a> {
    locks: &'a InodeLocks,
    ino: u32,
    mode: LockMode,
}

impl std::fmt::Debug for InodeGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InodeGuard").field("ino", &self.ino).field("mode", &self.mode).finish()
    }
}

impl InodeLocks {
    fn shard(&self, ino: u32) -> &Shard {
        &self.shards[ino as usize % SHARDS]
    }

    fn states(shard: &Shard) -> MutexGuard<'_, HashMap<u32, State>> {
        shard.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks inode `ino` in `mode`, waiting as long as it takes.
    pub fn lock(&self, ino: u32, mode: LockMode) -> InodeGuard<'_> {
        let shard = self.shard(ino);
        let mut states = Self::states(shard);
        {
            let st = states.entry(ino).or_default();
            match mode {
                LockMode::Shared => st.waiting_readers += 1,
                LockMode::Exclusive => st.waiting_writers += 1,
            }
        }
        loop {
            let st = states.get_mut(&ino).expect("a waiter keeps its entry");
            let free = match mode {
                LockMode::Shared => !st.writer && st.waiting_writers == 0,
                LockMode::Exclusive => !st.writer && st.readers == 0,
            };
            if free {
                match mode {
                    LockMode::Shared => {
                        st.waiting_readers -= 1;
                        st.readers += 1;
                    }
                    LockMode::Exclusive => {
                        st.waiting_writers -= 1;
                        st.writer = true;
                    }
                }
                return InodeGuard { locks: self, ino, mode };
            }
            states = shard.changed.wait(states).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn unlock(&self, ino: u32, mode: LockMode) {
        let shard = self.shard(ino);
        let mut states = Self::states(shard);
        if let Some(st) = states.get_mut(&ino) {
            match mode {
                LockMode::Shared => st.readers -= 1,
                LockMode::Exclusive => st.writer = false,
            }
            if st.idle() {
                states.remove(&ino);
            }
        }
        drop(states);
        shard.changed.notify_all();
    }

    /// Number of threads waiting for an inode lock right now. Tests use it to
    /// know that a thread reached a lock it must wait for.
    pub fn waiters(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                Self::states(s).values().map(|st| (st.waiting_readers + st.waiting_writers) as usize).sum::<usize>()
            })
            .sum()
    }

    /// Number of inodes locked or waited for (an idle table is empty).
    pub fn entries(&self) -> usize {
        self.shards.iter().map(|s| Self::states(s).len()).sum()
    }
}

impl Drop for InodeGuard<'_> {
    fn drop(&mut self) {
        self.locks.unlock(self.ino, self.mode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn wait_for_waiters(l: &InodeLocks, n: usize) {
        while l.waiters() < n {
            std::thread::yield_now();
        }
    }

    #[test]
    fn readers_share_writers_exclude() {
        let l = InodeLocks::default();
        let a = l.lock(5, LockMode::Shared);
        let b = l.lock(5, LockMode::Shared);
        let other = l.lock(6, LockMode::Exclusive);
        let wrote = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _w = l.lock(5, LockMode::Exclusive);
                wrote.store(true, Ordering::SeqCst);
            });
            wait_for_waiters(&l, 1);
            assert!(!wrote.load(Ordering::SeqCst), "a writer waits for readers");
            drop(a);
            assert!(!wrote.load(Ordering::SeqCst));
            drop(b);
        });
        assert!(wrote.load(Ordering::SeqCst));
        drop(other);
        assert_eq!(l.entries(), 0, "idle entries leave the table");
    }

    #[test]
    fn waiting_writer_blocks_new_readers() {
        let l = InodeLocks::default();
        let r = l.lock(9, LockMode::Shared);
        let order = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                let _w = l.lock(9, LockMode::Exclusive);
                order.lock().unwrap().push("writer");
            });
            wait_for_waiters(&l, 1);
            s.spawn(|| {
                let _r = l.lock(9, LockMode::Shared);
                order.lock().unwrap().push("reader");
            });
            wait_for_waiters(&l, 2);
            drop(r);
        });
        assert_eq!(*order.lock().unwrap(), vec!["writer", "reader"]);
        assert_eq!(l.entries(), 0);
    }
}
