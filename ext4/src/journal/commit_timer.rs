//! Periodic commits: a background thread that commits the running
//! transaction every `commit_interval` (ext4's `commit=` mount option), so
//! that operations become durable within that time even without fsync.

use super::transaction::TxManager;
use crate::error::Result;
use std::sync::Weak;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running commit timer. Dropping it stops the thread (and waits for a
/// commit in progress). The thread holds the transaction manager only
/// weakly: it ends by itself once the file system is gone.
#[derive(Debug)]
pub struct CommitTimer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl CommitTimer {
    /// Commits `tx`'s running transaction every `interval` (nothing is
    /// started for an interval of zero). A failed commit is logged; its
    /// blocks stay in the running transaction, so the next commit (or
    /// fsync) retries and reports it.
    pub fn start(tx: Weak<TxManager>, interval: Duration) -> Result<CommitTimer> {
        if interval.is_zero() {
            return Ok(CommitTimer { stop: None, thread: None });
        }
        let (stop, wake) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ext4-commit".into())
            .spawn(move || run(tx, wake, interval))
            .map_err(|source| crate::Error::Io { offset: 0, source })?;
        Ok(CommitTimer { stop: Some(stop), thread: Some(thread) })
    }
}

fn run(tx: Weak<TxManager>, wake: mpsc::Receiver<()>, interval: Duration) {
    loop {
        match wake.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stopped: the sender was dropped (or, never, sent to).
            _ => return,
        }
        let Some(tx) = tx.upgrade() else { return };
        if let Err(e) = tx.commit() {
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
