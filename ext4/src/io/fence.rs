//! A device that stops writing at once when fenced: what a shut-down file
//! system ([`crate::Ext4::shutdown`]) stands on, so that no byte reaches
//! the image after the shutdown, whoever tries (a handle, a data write, a
//! checkpoint, the commit timer), as if the machine had stopped there.

use super::device::BlockDevice;
use crate::error::{Error, Result};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// `inner`, until [`FencedDevice::fence`]: then writes, discards and
/// flushes fail with [`Error::ShutDown`]; reads still work.
pub struct FencedDevice {
    inner: Arc<dyn BlockDevice>,
    fenced: AtomicBool,
}

impl FencedDevice {
    /// Wraps `inner`, unfenced.
    pub fn new(inner: Arc<dyn BlockDevice>) -> Self {
        FencedDevice { inner, fenced: AtomicBool::new(false) }
    }

    /// Refuses every later write. Writes already under way finish.
    pub fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    /// Whether [`FencedDevice::fence`] was called.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<()> {
        if self.is_fenced() { Err(Error::ShutDown) } else { Ok(()) }
    }
}

impl BlockDevice for FencedDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check()?;
        self.inner.write_at(buf, offset)
    }

    fn flush(&self) -> Result<()> {
        self.check()?;
        self.inner.flush()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn raw_fd(&self) -> Option<RawFd> {
        self.inner.raw_fd()
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check()?;
        self.inner.discard(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;

    #[test]
    fn writes_stop_at_the_fence_and_reads_go_on() {
        let mem = Arc::new(MemDevice::new(vec![0u8; 8192]));
        let dev = FencedDevice::new(mem.clone());
        dev.write_at(&[1; 512], 0).unwrap();
        dev.fence();
        assert!(matches!(dev.write_at(&[2; 512], 0), Err(Error::ShutDown)));
        assert!(matches!(dev.discard(0, 4096), Err(Error::ShutDown)));
        assert!(matches!(dev.flush(), Err(Error::ShutDown)));
        let mut buf = [0u8; 512];
        dev.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [1; 512]);
        assert_eq!(mem.contents()[0], 1);
    }
}
