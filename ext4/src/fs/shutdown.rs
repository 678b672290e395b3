//! Shutdown (`FS_IOC_SHUTDOWN`, xfstests' `godown`): the file system stops
//! at once, as if the machine had stopped there, so that tests and users
//! can see what a crash at that moment leaves. Afterwards no handle
//! begins and the device refuses every write ([`crate::io::FencedDevice`]);
//! reads still work; [`Ext4::close`] writes nothing, so the image keeps
//! `needs_recovery` and the next open replays what was committed.

use crate::error::Result;
use crate::fs::Ext4;
use std::sync::atomic::Ordering;

/// What [`Ext4::shutdown`] does with the running transaction (the
/// kernel's `EXT4_GOING_FLAGS_LOGFLUSH` and `_NOLOGFLUSH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Commits it first: every completed operation survives.
    FlushLog,
    /// Drops it: what was not committed is lost, as in a crash.
    NoFlush,
}

impl Ext4 {
    /// Shuts the file system down (see the module documentation). A second
    /// call does nothing.
    pub fn shutdown(&self, mode: ShutdownMode) -> Result<()> {
        if self.is_shut_down() {
            return Ok(());
        }
        if mode == ShutdownMode::FlushLog {
            self.fsync()?;
        }
        if let Some(f) = &self.fence {
            f.fence();
        }
        self.shut_down.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Whether [`Ext4::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }
}
