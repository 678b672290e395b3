//! INTERFACE STUB (owner: helper "journal"). Copy-on-write overlay.

use super::device::BlockDevice;
use crate::error::Result;
use std::sync::Arc;

/// A device whose writes stay in memory over a read-only base.
pub struct OverlayDevice {
    base: Arc<dyn BlockDevice>,
}

impl OverlayDevice {
    /// An overlay over `base`.
    pub fn new(base: Arc<dyn BlockDevice>) -> Self {
        OverlayDevice { base }
    }
}

impl BlockDevice for OverlayDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.base.read_at(buf, offset)
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        todo!("journal helper")
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        self.base.len()
    }
}
