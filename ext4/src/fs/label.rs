//! The volume label (`s_volume_name`, what `e2label` and
//! FS_IOC_GETFSLABEL / FS_IOC_SETFSLABEL show and change).

use crate::error::{Error, Result};
use crate::fs::Ext4;

/// Longest label ext4 stores (the kernel's `EXT4_LABEL_MAX`).
pub const LABEL_MAX: usize = 16;

impl Ext4 {
    /// The volume label as it stands now (bytes up to the first NUL).
    pub fn label(&self) -> Result<Vec<u8>> {
        Ok(self.current_superblock()?.label_bytes().to_vec())
    }

    /// Sets the volume label in one journal handle, as the kernel's
    /// `ext4_ioctl_setlabel`: at most [`LABEL_MAX`] bytes (longer is
    /// [`Error::InvalidArgument`]), stored NUL-padded. Only the primary
    /// superblock changes (the kernel's ext4 rewrites the backups too;
    /// `e2fsck -fn` accepts either, as the tests check).
    pub fn set_label(&self, label: &[u8]) -> Result<()> {
        if label.len() > LABEL_MAX || label.contains(&0) {
            return Err(Error::InvalidArgument(format!("volume label of {} bytes", label.len())));
        }
        let mut h = self.begin()?;
        self.update_superblock(&mut h, |sb| sb.set_label_bytes(label))?;
        h.finish();
        Ok(())
    }
}
