//! POSIX record locks (fcntl F_GETLK / F_SETLK / F_SETLKW), kept by the
//! daemon per inode: the client kernel forwards them because the server
//! negotiates FUSE_POSIX_LOCKS, so processes on different clients of the
//! same image see each other's locks. Ranges are inclusive, as on the wire.

use super::errno::{Errno, FsResult};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};

/// Lock types, as in fcntl.
pub const F_RDLCK: u32 = libc::F_RDLCK as u32;
/// Write lock.
pub const F_WRLCK: u32 = libc::F_WRLCK as u32;
/// Unlock.
pub const F_UNLCK: u32 = libc::F_UNLCK as u32;

/// One lock held by an owner on a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeLock {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
    /// [`F_RDLCK`] or [`F_WRLCK`].
    pub typ: u32,
    /// Lock owner (the client's `fl_owner`).
    pub owner: u64,
    /// Process that took it (reported by F_GETLK).
    pub pid: u32,
}

impl RangeLock {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }

    fn conflicts(&self, other: &RangeLock) -> bool {
        self.owner != other.owner
            && self.overlaps(other.start, other.end)
            && (self.typ == F_WRLCK || other.typ == F_WRLCK)
    }
}

/// How many interrupts of requests not (yet) waiting are remembered: one
/// may arrive before its F_SETLKW starts to wait.
const INTERRUPTS_KEPT: usize = 4096;

/// Most F_SETLKW requests blocked at once: each holds a thread, so a
/// client cannot pile up more (ENOLCK beyond).
const MAX_WAITERS: usize = 1024;

#[derive(Debug, Default)]
struct State {
    locks: HashMap<u32, Vec<RangeLock>>,
    /// F_SETLKW requests waiting now.
    waiters: usize,
    /// Bumped when a session ends: its waiters give up.
    session: u64,
    /// Requests (by unique) the client interrupted, oldest first.
    interrupted: HashSet<u64>,
    interrupt_order: VecDeque<u64>,
}

/// Every inode's locks.
#[derive(Debug, Default)]
pub struct LockTable {
    state: Mutex<State>,
    changed: Condvar,
}

/// Removes `owner`'s locks on `start..=end` from `v`, splitting ranges
/// that stick out.
fn cut(v: &mut Vec<RangeLock>, owner: u64, start: u64, end: u64) {
    let mut out = Vec::with_capacity(v.len() + 1);
    for l in v.drain(..) {
        if l.owner != owner || !l.overlaps(start, end) {
            out.push(l);
            continue;
        }
        if l.start < start {
            out.push(RangeLock { end: start - 1, ..l });
        }
        if l.end > end {
            out.push(RangeLock { start: end + 1, ..l });
        }
    }
    *v = out;
}

/// Adds `new` to `v` (after [`cut`]), merging it with the owner's
/// adjacent locks of the same type.
fn insert_merged(v: &mut Vec<RangeLock>, mut new: RangeLock) {
    v.retain(|l| {
        let adjacent = l.owner == new.owner
            && l.typ == new.typ
            && (l.end.checked_add(1) == Some(new.start) || new.end.checked_add(1) == Some(l.start));
        if adjacent {
            new.start = new.start.min(l.start);
            new.end = new.end.max(l.end);
        }
        !adjacent
    });
    v.push(new);
}

impl LockTable {
    /// F_GETLK: the first lock that would block `want`, if any.
    pub fn test(&self, ino: u32, want: &RangeLock) -> Option<RangeLock> {
        let st = self.state.lock().unwrap();
        st.locks.get(&ino)?.iter().find(|l| l.conflicts(want)).copied()
    }

    fn try_set(st: &mut State, ino: u32, want: &RangeLock) -> bool {
        let v = st.locks.entry(ino).or_default();
        if want.typ != F_UNLCK && v.iter().any(|l| l.conflicts(want)) {
            return false;
        }
        cut(v, want.owner, want.start, want.end);
        if want.typ != F_UNLCK {
            insert_merged(v, *want);
        }
        if v.is_empty() {
            st.locks.remove(&ino);
        }
        true
    }

    /// F_SETLK: takes, changes or releases (`F_UNLCK`) a lock; EAGAIN when
    /// another owner's lock conflicts.
    pub fn set(&self, ino: u32, want: &RangeLock) -> FsResult<()> {
        validate(want)?;
        let mut st = self.state.lock().unwrap();
        if Self::try_set(&mut st, ino, want) {
            self.changed.notify_all();
            Ok(())
        } else {
            Err(Errno::EAGAIN)
        }
    }

    /// F_SETLKW: like [`LockTable::set`] but waits until the lock can be
    /// taken, or until request `unique` is interrupted (EINTR).
    /// At most [`MAX_WAITERS`] wait at once (ENOLCK beyond), and all of
    /// them give up (EINTR) when the session ends.
    pub fn set_wait(&self, ino: u32, want: &RangeLock, unique: u64) -> FsResult<()> {
        validate(want)?;
        let mut st = self.state.lock().unwrap();
        if st.waiters >= MAX_WAITERS {
            return Err(Errno::ENOLCK);
        }
        st.waiters += 1;
        let session = st.session;
        let result = loop {
            if st.interrupted.remove(&unique) || st.session != session {
                break Err(Errno::EINTR);
            }
            if Self::try_set(&mut st, ino, want) {
                self.changed.notify_all();
                break Ok(());
            }
            st = self.changed.wait(st).unwrap();
        };
        st.waiters -= 1;
        result
    }

    /// The end of a session: every lock is gone and every waiter gives up.
    pub fn end_session(&self) {
        let mut st = self.state.lock().unwrap();
        st.locks.clear();
        st.session += 1;
        self.changed.notify_all();
    }

    /// INTERRUPT of request `unique`: a waiting F_SETLKW under that id
    /// gives up with EINTR, now or when it starts waiting. Interrupts of
    /// requests that never wait are remembered for a while, then dropped.
    pub fn interrupt(&self, unique: u64) {
        let mut st = self.state.lock().unwrap();
        if st.interrupted.insert(unique) {
            st.interrupt_order.push_back(unique);
        }
        while st.interrupt_order.len() > INTERRUPTS_KEPT {
            let old = st.interrupt_order.pop_front().expect("non-empty");
            st.interrupted.remove(&old);
        }
        self.changed.notify_all();
    }

    /// Releases every lock `owner` holds on `ino` (close of a descriptor:
    /// FLUSH and RELEASE carry the owner).
    pub fn release_owner(&self, ino: u32, owner: u64) {
        let mut st = self.state.lock().unwrap();
        if let Some(v) = st.locks.get_mut(&ino) {
            v.retain(|l| l.owner != owner);
            if v.is_empty() {
                st.locks.remove(&ino);
            }
            self.changed.notify_all();
        }
    }
}

fn validate(want: &RangeLock) -> FsResult<()> {
    if want.start > want.end || ![F_RDLCK, F_WRLCK, F_UNLCK].contains(&want.typ) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lk(start: u64, end: u64, typ: u32, owner: u64) -> RangeLock {
        RangeLock { start, end, typ, owner, pid: owner as u32 }
    }

    #[test]
    fn conflicts_split_and_merge() {
        let t = LockTable::default();
        t.set(1, &lk(0, 99, F_WRLCK, 1)).unwrap();
        assert_eq!(t.set(1, &lk(50, 60, F_RDLCK, 2)), Err(Errno::EAGAIN));
        t.set(1, &lk(40, 59, F_UNLCK, 1)).unwrap();
        t.set(1, &lk(40, 59, F_RDLCK, 2)).unwrap();
        assert_eq!(t.test(1, &lk(30, 45, F_RDLCK, 3)).map(|l| (l.start, l.end)), Some((0, 39)));
        assert_eq!(t.test(1, &lk(40, 59, F_RDLCK, 3)), None, "read locks share");
        t.set(1, &lk(40, 59, F_WRLCK, 1)).unwrap_err();
        t.release_owner(1, 2);
        t.set(1, &lk(40, 59, F_WRLCK, 1)).unwrap();
        let st = t.state.lock().unwrap();
        assert_eq!(st.locks[&1], vec![lk(0, 99, F_WRLCK, 1)], "adjacent ranges merge back");
    }

    #[test]
    fn waiters_wake_on_release_and_on_interrupt() {
        let t = std::sync::Arc::new(LockTable::default());
        t.set(7, &lk(0, u64::MAX, F_WRLCK, 1)).unwrap();
        let t2 = t.clone();
        let w = std::thread::spawn(move || t2.set_wait(7, &lk(0, 10, F_WRLCK, 2), 42));
        std::thread::sleep(std::time::Duration::from_millis(20));
        t.release_owner(7, 1);
        assert_eq!(w.join().unwrap(), Ok(()));
        let t3 = t.clone();
        let w = std::thread::spawn(move || t3.set_wait(7, &lk(5, 6, F_RDLCK, 3), 43));
        t.interrupt(43);
        assert_eq!(w.join().unwrap(), Err(Errno::EINTR), "interrupted before or while waiting");
        let t4 = t.clone();
        let w = std::thread::spawn(move || t4.set_wait(7, &lk(0, 1, F_WRLCK, 4), 44));
        std::thread::sleep(std::time::Duration::from_millis(20));
        t.end_session();
        assert_eq!(w.join().unwrap(), Err(Errno::EINTR), "the session's end wakes waiters");
        assert!(t.state.lock().unwrap().locks.is_empty());
        for u in 0..(INTERRUPTS_KEPT as u64 + 10) {
            t.interrupt(1000 + u);
        }
        assert!(t.state.lock().unwrap().interrupted.len() <= INTERRUPTS_KEPT);
    }

    #[test]
    fn waiters_are_bounded() {
        let t = LockTable::default();
        t.set(3, &lk(0, 9, F_WRLCK, 1)).unwrap();
        t.state.lock().unwrap().waiters = MAX_WAITERS;
        assert_eq!(t.set_wait(3, &lk(0, 9, F_WRLCK, 2), 9), Err(Errno::ENOLCK));
        t.state.lock().unwrap().waiters = 0;
        assert_eq!(t.set_wait(3, &lk(20, 29, F_WRLCK, 2), 9), Ok(()), "no conflict: no wait");
    }
}
