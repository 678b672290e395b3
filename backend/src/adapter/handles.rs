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

/// The handles the client holds.
#[derive(Debug)]
pub struct HandleTable {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Handle>>,
}

impl Default for HandleTable {
    fn default() -> Self {
        HandleTable { next: AtomicU64::new(1), open: Mutex::new(HashMap::new()) }
    }
}

impl HandleTable {
    /// Registers a new handle and returns its id.
    pub fn insert(&self, h: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().unwrap().insert(fh, h);
        fh
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
