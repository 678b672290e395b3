//! An in-memory device for tests and for images built on the fly.

use super::device::{BlockDevice, eof_error};
use crate::error::Result;
use std::sync::RwLock;

/// An image held in memory.
#[derive(Debug, Default)]
pub struct MemDevice {
    data: RwLock<Vec<u8>>,
}

impl MemDevice {
    /// A device holding `data`.
    pub fn new(data: Vec<u8>) -> Self {
        MemDevice { data: RwLock::new(data) }
    }

    /// A copy of the current contents.
    pub fn contents(&self) -> Vec<u8> {
        self.data.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl BlockDevice for MemDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let data = self.data.read().unwrap_or_else(|e| e.into_inner());
        let start = usize::try_from(offset).map_err(|_| eof_error(offset))?;
        let end = start.checked_add(buf.len()).filter(|&e| e <= data.len()).ok_or_else(|| eof_error(offset))?;
        buf.copy_from_slice(&data[start..end]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let start = usize::try_from(offset).map_err(|_| eof_error(offset))?;
        let end = start.checked_add(buf.len()).ok_or_else(|| eof_error(offset))?;
        if end > data.len() {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn len(&self) -> u64 {
        self.data.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_past_end_fails() {
        let d = MemDevice::new(vec![1, 2, 3]);
        let mut b = [0u8; 2];
        d.read_at(&mut b, 1).unwrap();
        assert_eq!(b, [2, 3]);
        assert!(d.read_at(&mut b, 2).is_err());
        assert!(d.read_at(&mut b, u64::MAX).is_err());
    }
}
