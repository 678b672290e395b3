//! Periodic commits: a background thread that commits the running
//! transaction every `commit_interval` (ext4's `commit=` mount option), so
//! that operations become durable within that time even without fsync.

use crate::error::Result;
use crate::fs::Ext4;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running commit timer. Dropping it stops the thread (and waits for a
/// commit in progress). The thread holds the file system only weakly: it
/// ends by itself once the last [`Arc<Ext4>`] is gone.
#[derive(Debug)]
pub struct CommitTimer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ext4 {
    /// Starts committing the running transaction every
    /// [`OpenOptions::commit_interval`](crate::OpenOptions::commit_interval)
    /// (nothing is started for an interval of zero). A failed commit is
    /// logged; its blocks stay in the running transaction, so the next
    /// commit (or fsync) retries and reports it. [`crate::Error::ReadOnly`]
    /// for a read-only file system.
    pub fn start_commit_timer(self: &Arc<Self>) -> Result<CommitTimer> {
        let interval = self.tx()?.commit_interval();
        if interval.is_zero() {
            return Ok(CommitTimer { stop: None, thread: None });
        }
        let (stop, wake) = mpsc::channel();
        let fs = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("ext4-commit".into())
            .spawn(move || run(fs, wake, interval))
            .map_err(|source| crate::Error::Io { offset: 0, source })?;
        Ok(CommitTimer { stop: Some(stop), thread: Some(thread) })
    }
}

fn run(fs: Weak<Ext4>, wake: mpsc::Receiver<()>, interval: Duration) {
    loop {
        match wake.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stopped: the sender was dropped (or, never, sent to).
            _ => return,
        }
        let Some(fs) = fs.upgrade() else { return };
        if let Ok(tx) = fs.tx()
            && let Err(e) = tx.commit()
        {
            log::warn!("periodic journal commit failed: {e}");
        }
    }
}

impl Drop for CommitTimer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
