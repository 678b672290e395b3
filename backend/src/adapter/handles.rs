//! Open file and directory handles (FUSE `fh`). Each handle holds an open
//! reference on its inode in the core, so unlinking an open file orphans
//! it until the last RELEASE.

use super::errno::{Errno, FsResult};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an open handle allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    /// The inode it was opened on.
    pub ino: u32,
    /// Opened for reading.
    pub read: bool,
    /// Opened for writing.
    pub write: bool,
    /// O_APPEND: every write goes to the end of the file.
    pub append: bool,
    /// A directory handle (OPENDIR).
    pub dir: bool,
}

/// Default bound of open handles per session.
pub const DEFAULT_MAX_HANDLES: usize = 65_536;

/// The handles the client holds, at most a configured number at once.
#[derive(Debug)]
pub struct HandleTable {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Handle>>,
    max: usize,
}

impl Default for HandleTable {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_HANDLES)
    }
}

impl HandleTable {
    /// A table holding at most `max` handles at once.
    pub fn new(max: usize) -> Self {
        HandleTable { next: AtomicU64::new(1), open: Mutex::new(HashMap::new()), max }
    }

    /// Registers a new handle and returns its id; EMFILE when the table is full.
    pub fn insert(&self, h: Handle) -> FsResult<u64> {
        let mut open = self.open.lock().unwrap();
        if open.len() >= self.max {
            return Err(Errno::EMFILE);
        }
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        open.insert(fh, h);
        Ok(fh)
    }

    /// Whether another handle fits now.
    pub fn has_room(&self) -> bool {
        self.open.lock().unwrap().len() < self.max
    }

    /// Number of open handles.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap().len()
    }

    /// Whether no handle is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The handle `fh` of inode `ino`; EBADF when it does not exist or
    /// belongs to another inode, or is of the wrong kind.
    pub fn get(&self, fh: u64, ino: u32, dir: bool) -> FsResult<Handle> {
        match self.open.lock().unwrap().get(&fh) {
            Some(h) if h.ino == ino && h.dir == dir => Ok(*h),
            _ => Err(Errno::EBADF),
        }
    }

    /// Removes handle `fh` (of inode `ino`) and returns it.
    pub fn remove(&self, fh: u64, ino: u32, dir: bool) -> FsResult<Handle> {
        let mut open = self.open.lock().unwrap();
        match open.get(&fh) {
            Some(h) if h.ino == ino && h.dir == dir => Ok(open.remove(&fh).expect("present")),
            _ => Err(Errno::EBADF),
        }
    }

    /// Removes every handle (end of session) and returns them.
    pub fn drain(&self) -> Vec<Handle> {
        self.open.lock().unwrap().drain().map(|(_, h)| h).collect()
    }
}
