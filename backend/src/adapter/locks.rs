//! POSIX record locks (fcntl F_GETLK / F_SETLK / F_SETLKW), kept by the
//! daemon per inode: the client kernel forwards them because the server
//! negotiates FUSE_POSIX_LOCKS, so processes on different clients of the
//! same image see each other's locks. Ranges are inclusive, as on the wire.
//!
//! Each inode's locks are disjoint segments in a [`RangeMap`], each with
//! the owners holding it (one writer, or any number of readers), so a test,
//! set or unlock costs O(log n + overlaps); each owner's coverage is kept
//! too, so that closing a descriptor finds its locks without a scan. The
//! number of lock records (segment holders) of a session is bounded
//! (ENOLCK beyond); the number of F_SETLKW waiters is bounded by the
//! server, before it starts a thread for one.

use super::errno::{Errno, FsResult};
use super::range_map::RangeMap;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};

/// Lock types, as in fcntl.
pub const F_RDLCK: u32 = libc::F_RDLCK as u32;
/// Write lock.
pub const F_WRLCK: u32 = libc::F_WRLCK as u32;
/// Unlock.
pub const F_UNLCK: u32 = libc::F_UNLCK as u32;

/// Default bound of lock records per session.
pub const DEFAULT_MAX_RECORDS: usize = 65_536;

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
    /// The handle (open file description) it was taken through: an OFD
    /// lock's owner is that description, so its locks end with the
    /// handle's RELEASE (see [`LockTable::release_handle`]).
    pub fh: u64,
}

/// One owner's hold on a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    owner: u64,
    typ: u32,
    pid: u32,
}

impl Holder {
    fn conflicts(&self, want: &RangeLock) -> bool {
        self.owner != want.owner && (self.typ == F_WRLCK || want.typ == F_WRLCK)
    }
}

/// The locks of one inode.
#[derive(Debug, Default)]
struct InodeLocks {
    /// Disjoint segments and their holders, sorted by owner.
    segs: RangeMap<Vec<Holder>>,
    /// What each owner holds, whatever the type.
    owned: HashMap<u64, RangeMap<()>>,
    /// The handles each owner holding locks took them through (owners
    /// without locks have no entry).
    via: HashMap<u64, Vec<u64>>,
}

impl InodeLocks {
    fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// The first lock of another owner that blocks `want`, as that owner's
    /// whole contiguous lock of that type.
    fn conflict(&self, want: &RangeLock) -> Option<RangeLock> {
        let (s, e, h) = self
            .segs
            .overlapping(want.start, want.end)
            .find_map(|(s, e, hs)| hs.iter().find(|h| h.conflicts(want)).map(|h| (s, e, *h)))?;
        let holds = |hs: &Vec<Holder>| hs.contains(&h);
        let (mut start, mut end) = (s, e);
        while let Some((ps, _, _)) = self.segs.left_neighbour(start).filter(|(_, _, hs)| holds(hs)) {
            start = ps;
        }
        while let Some((_, ne, _)) = self.segs.right_neighbour(end).filter(|(_, _, hs)| holds(hs)) {
            end = ne;
        }
        Some(RangeLock { start, end, typ: h.typ, owner: h.owner, pid: h.pid, fh: 0 })
    }

    /// Sets (or with `F_UNLCK` removes) `want`'s owner's lock on its range;
    /// returns the change in lock records, or ENOLCK (changing nothing)
    /// when a lock would take the session past `room` more records.
    fn apply(&mut self, want: &RangeLock, room: usize) -> FsResult<isize> {
        let new = (want.typ != F_UNLCK).then_some(Holder { owner: want.owner, typ: want.typ, pid: want.pid });
        let undo = self.segs.update(want.start, want.end, |hs| {
            let mut hs: Vec<Holder> =
                hs.map(|v| v.iter().copied().filter(|h| h.owner != want.owner).collect()).unwrap_or_default();
            if let Some(n) = new {
                let at = hs.partition_point(|h| h.owner < n.owner);
                hs.insert(at, n);
            }
            (!hs.is_empty()).then_some(hs)
        });
        let before: usize = undo.old.iter().map(|(_, _, hs)| hs.len()).sum();
        let after: usize = self.segs.window(&undo).map(|(_, _, hs)| hs.len()).sum();
        if new.is_some() && after > before && after - before > room {
            self.segs.undo(undo);
            return Err(Errno::ENOLCK);
        }
        let cover = self.owned.entry(want.owner).or_default();
        cover.update(want.start, want.end, |_| new.map(|_| ()));
        if cover.is_empty() {
            self.owned.remove(&want.owner);
            self.via.remove(&want.owner);
        } else if new.is_some() {
            let fhs = self.via.entry(want.owner).or_default();
            if !fhs.contains(&want.fh) {
                fhs.push(want.fh);
            }
        }
        Ok(after as isize - before as isize)
    }
}

/// How many interrupts of requests not (yet) waiting are remembered: one
/// may arrive before its F_SETLKW starts to wait.
const INTERRUPTS_KEPT: usize = 4096;

#[derive(Debug, Default)]
struct State {
    locks: HashMap<u32, InodeLocks>,
    /// Lock records (segment holders) of every inode.
    records: usize,
    /// Bumped when a session ends: its waiters give up.
    session: u64,
    /// Requests (by unique) the client interrupted, oldest first.
    interrupted: HashSet<u64>,
    interrupt_order: VecDeque<u64>,
}

/// Every inode's locks.
#[derive(Debug)]
pub struct LockTable {
    state: Mutex<State>,
    changed: Condvar,
    max_records: usize,
}

impl Default for LockTable {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RECORDS)
    }
}

impl LockTable {
    /// A table that holds at most `max_records` lock records at once.
    pub fn new(max_records: usize) -> Self {
        LockTable { state: Mutex::new(State::default()), changed: Condvar::new(), max_records }
    }

    /// F_GETLK: the first lock that would block `want`, if any.
    pub fn test(&self, ino: u32, want: &RangeLock) -> Option<RangeLock> {
        let st = self.state.lock().unwrap();
        st.locks.get(&ino)?.conflict(want)
    }

    /// Takes the lock if nothing blocks it: Ok(false) when something does.
    fn try_set(&self, st: &mut State, ino: u32, want: &RangeLock) -> FsResult<bool> {
        let room = self.max_records.saturating_sub(st.records);
        let il = st.locks.entry(ino).or_default();
        if want.typ != F_UNLCK && il.conflict(want).is_some() {
            if il.is_empty() {
                st.locks.remove(&ino);
            }
            return Ok(false);
        }
        let r = il.apply(want, room);
        if il.is_empty() {
            st.locks.remove(&ino);
        }
        st.records = st.records.saturating_add_signed(r?);
        Ok(true)
    }

    /// F_SETLK: takes, changes or releases (`F_UNLCK`) a lock; EAGAIN when
    /// another owner's lock conflicts, ENOLCK when the session holds too
    /// many lock records.
    pub fn set(&self, ino: u32, want: &RangeLock) -> FsResult<()> {
        validate(want)?;
        let mut st = self.state.lock().unwrap();
        if self.try_set(&mut st, ino, want)? {
            self.changed.notify_all();
            Ok(())
        } else {
            Err(Errno::EAGAIN)
        }
    }

    /// F_SETLKW: like [`LockTable::set`] but waits until the lock can be
    /// taken, or until request `unique` is interrupted (EINTR). Every
    /// waiter gives up (EINTR) when the session ends.
    pub fn set_wait(&self, ino: u32, want: &RangeLock, unique: u64) -> FsResult<()> {
        validate(want)?;
        let mut st = self.state.lock().unwrap();
        let session = st.session;
        loop {
            if st.interrupted.remove(&unique) || st.session != session {
                return Err(Errno::EINTR);
            }
            if self.try_set(&mut st, ino, want)? {
                self.changed.notify_all();
                return Ok(());
            }
            st = self.changed.wait(st).unwrap();
        }
    }

    /// The end of a session: every lock is gone and every waiter gives up.
    pub fn end_session(&self) {
        let mut st = self.state.lock().unwrap();
        st.locks.clear();
        st.records = 0;
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

    /// Releases every lock `owner` holds on `ino`: the close of a
    /// descriptor by a process (FLUSH carries the process's POSIX owner),
    /// or a RELEASE naming its owner (flock emulation, FUSE_RELEASE_FLUSH).
    pub fn release_owner(&self, ino: u32, owner: u64) {
        let mut st = self.state.lock().unwrap();
        let Some(il) = st.locks.get_mut(&ino) else { return };
        let delta = Self::drop_owner(il, owner);
        if il.is_empty() {
            st.locks.remove(&ino);
        }
        st.records = st.records.saturating_add_signed(delta);
        self.changed.notify_all();
    }

    /// RELEASE of handle `fh` of `ino` (the last close of an open file
    /// description): every owner that still holds locks taken through it
    /// loses its locks on `ino`. Those are its open file description
    /// locks, whose owner is the description itself: the kernel sends no
    /// owner with a RELEASE for them. A process's POSIX locks are gone by
    /// then — each close by the process sent a FLUSH with its owner.
    pub fn release_handle(&self, ino: u32, fh: u64) {
        let mut st = self.state.lock().unwrap();
        let Some(il) = st.locks.get_mut(&ino) else { return };
        let owners: Vec<u64> = il.via.iter().filter(|(_, fhs)| fhs.contains(&fh)).map(|(&o, _)| o).collect();
        if owners.is_empty() {
            return;
        }
        let delta: isize = owners.into_iter().map(|o| Self::drop_owner(il, o)).sum();
        if il.is_empty() {
            st.locks.remove(&ino);
        }
        st.records = st.records.saturating_add_signed(delta);
        self.changed.notify_all();
    }

    /// Removes every lock of `owner` from `il`; the change in records.
    fn drop_owner(il: &mut InodeLocks, owner: u64) -> isize {
        let Some(cover) = il.owned.get(&owner) else { return 0 };
        let ranges: Vec<(u64, u64)> = cover.iter().map(|(s, e, _)| (s, e)).collect();
        let mut delta = 0isize;
        for (start, end) in ranges {
            let unlock = RangeLock { start, end, typ: F_UNLCK, owner, pid: 0, fh: 0 };
            delta += il.apply(&unlock, usize::MAX).expect("unlocking always fits");
        }
        delta
    }

    /// Lock records held now (segment holders over every inode).
    pub fn records(&self) -> usize {
        self.state.lock().unwrap().records
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
        RangeLock { start, end, typ, owner, pid: owner as u32, fh: 0 }
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
        assert_eq!(t.test(1, &lk(70, 70, F_RDLCK, 3)), Some(lk(0, 99, F_WRLCK, 1)), "adjacent ranges merge back");
        assert_eq!(t.records(), 1);
        // Readers sharing a range split it; F_GETLK still reports each whole lock.
        t.set(2, &lk(0, u64::MAX, F_RDLCK, 1)).unwrap();
        t.set(2, &lk(50, 60, F_RDLCK, 2)).unwrap();
        assert_eq!(t.test(2, &lk(0, 0, F_WRLCK, 3)), Some(lk(0, u64::MAX, F_RDLCK, 1)));
        assert_eq!(t.test(2, &lk(55, 55, F_WRLCK, 1)), Some(lk(50, 60, F_RDLCK, 2)));
        t.release_owner(2, 1);
        t.release_owner(2, 2);
        t.release_owner(1, 1);
        assert_eq!(t.records(), 0);
        assert!(t.state.lock().unwrap().locks.is_empty());
    }

    /// Random operations on 64 bytes against a byte-by-byte model.
    #[test]
    fn agrees_with_a_byte_model() {
        let t = LockTable::default();
        // model[owner][byte]: 0 none, else the lock type + 1.
        let mut model = [[0u32; 64]; 4];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..20_000 {
            let (a, b) = (next(64), next(64));
            let (start, end) = (a.min(b), a.max(b));
            let owner = next(4);
            let typ = [F_RDLCK, F_WRLCK, F_UNLCK][next(3) as usize];
            let want = lk(start, end, typ, owner);
            let blocked = |model: &[[u32; 64]; 4]| {
                (0..4u64).filter(|&o| o != owner).any(|o| {
                    (start..=end).any(|b| {
                        let held = model[o as usize][b as usize];
                        held != 0 && (held - 1 == F_WRLCK || typ == F_WRLCK)
                    })
                })
            };
            if next(5) == 0 {
                t.release_owner(9, owner);
                model[owner as usize] = [0; 64];
                continue;
            }
            let expect = typ != F_UNLCK && blocked(&model);
            let got = if typ == F_UNLCK { None } else { t.test(9, &want) };
            assert_eq!(got.is_some(), expect, "test of {want:?}");
            if let Some(l) = got {
                assert!(l.owner != owner && l.start <= end && start <= l.end, "{l:?} vs {want:?}");
                assert!(
                    (l.start..=l.end).all(|b| model[l.owner as usize][b as usize] == l.typ + 1),
                    "{l:?} is held whole"
                );
            }
            let r = t.set(9, &want);
            assert_eq!(r.is_err(), expect);
            if r.is_ok() {
                for b in start..=end {
                    model[owner as usize][b as usize] = if typ == F_UNLCK { 0 } else { typ + 1 };
                }
            }
        }
        for o in 0..4 {
            t.release_owner(9, o);
        }
        assert_eq!(t.records(), 0);
    }

    /// OFD locks end with their handle's RELEASE, whoever holds the other
    /// handles; POSIX owners that unlocked (or were flushed) lose nothing.
    #[test]
    fn release_of_a_handle_ends_the_locks_taken_through_it() {
        let t = LockTable::default();
        let via = |start, end, typ, owner, fh| RangeLock { fh, ..lk(start, end, typ, owner) };
        t.set(3, &via(0, 9, F_WRLCK, 1, 11)).unwrap();
        t.set(3, &via(20, 29, F_RDLCK, 1, 11)).unwrap();
        t.set(3, &via(40, 49, F_WRLCK, 2, 12)).unwrap();
        t.set(3, &via(60, 69, F_WRLCK, 3, 11)).unwrap();
        t.set(3, &via(60, 69, F_UNLCK, 3, 11)).unwrap();
        t.set(3, &via(60, 69, F_WRLCK, 3, 13)).unwrap();
        t.release_handle(3, 99);
        t.release_handle(4, 11);
        assert_eq!(t.records(), 4);
        t.release_handle(3, 11);
        assert_eq!(t.test(3, &lk(0, 29, F_WRLCK, 9)), None, "owner 1's locks went with handle 11");
        assert!(t.test(3, &lk(40, 40, F_RDLCK, 9)).is_some(), "another handle's lock stays");
        assert!(t.test(3, &lk(60, 60, F_RDLCK, 9)).is_some(), "owner 3 unlocked through 11 and locked through 13");
        t.release_owner(3, 2);
        t.release_handle(3, 13);
        assert_eq!(t.records(), 0);
        assert!(t.state.lock().unwrap().locks.is_empty());
    }

    #[test]
    fn lock_records_are_bounded() {
        let t = LockTable::new(100);
        for i in 0..100u64 {
            t.set(1, &lk(i * 2, i * 2, F_WRLCK, 1)).unwrap();
        }
        assert_eq!(t.set(1, &lk(1000, 1000, F_WRLCK, 1)), Err(Errno::ENOLCK));
        assert_eq!(t.set_wait(2, &lk(0, 0, F_RDLCK, 2), 5), Err(Errno::ENOLCK), "no wait for room");
        assert_eq!(t.test(1, &lk(1000, 1000, F_WRLCK, 2)), None, "the refused lock changed nothing");
        assert_eq!(t.records(), 100);
        t.set(1, &lk(0, 9, F_WRLCK, 1)).unwrap();
        assert_eq!(t.records(), 95, "a lock merging records always fits (0..=10 are one now)");
        t.set(1, &lk(4, 4, F_UNLCK, 1)).unwrap();
        t.release_owner(1, 1);
        assert_eq!(t.records(), 0);
        t.set(1, &lk(1000, 1000, F_WRLCK, 1)).unwrap();
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
}
