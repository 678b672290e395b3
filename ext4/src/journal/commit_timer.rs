//! Periodic commits: a background thread that commits the running
//! transaction every `commit_interval` (ext4's `commit=` mount option), so
//! that operations become durable within that time even without fsync.

use crate::error::Result;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running commit timer. Dropping it stops the thread (and waits for a
/// commit in progress). Its tick holds the file system only weakly (see
/// `Ext4::start_commit_timer`): it ends by itself once that is gone.
#[derive(Debug)]
pub struct CommitTimer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl CommitTimer {
    /// Calls `tick` every `interval` until it returns `false` (the file
    /// system is gone) or the timer is dropped; nothing is started for an
    /// interval of zero. `tick` commits the running transaction; a failed
    /// commit is its to log (its blocks stay in the running transaction,
    /// so the next commit or fsync retries and reports it).
    pub fn start(interval: Duration, tick: impl FnMut() -> bool + Send + 'static) -> Result<CommitTimer> {
        if interval.is_zero() {
            return Ok(CommitTimer { stop: None, thread: None });
        }
        let (stop, wake) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ext4-commit".into())
            .spawn(move || run(wake, interval, tick))
            .map_err(|source| crate::Error::Io { offset: 0, source })?;
        Ok(CommitTimer { stop: Some(stop), thread: Some(thread) })
    }
}

fn run(wake: mpsc::Receiver<()>, interval: Duration, mut tick: impl FnMut() -> bool) {
    loop {
        match wake.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stopped: the sender was dropped (or, never, sent to).
            _ => return,
        }
        if !tick() {
            return;
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
