//! The volume label (`s_volume_name`, what `e2label` and
//! FS_IOC_GETFSLABEL / FS_IOC_SETFSLABEL show and change).

use crate::disk::superblock::Superblock;
use crate::error::{Error, Result};
use crate::fs::Ext4;

/// Longest label ext4 stores (the kernel's `EXT4_LABEL_MAX`).
pub const LABEL_MAX: usize = 16;

impl Ext4 {
    /// The volume label as it stands now (bytes up to the first NUL).
    pub fn label(&self) -> Result<Vec<u8>> {
        Ok(label_of(&self.current_superblock()?))
    }

    /// Sets the volume label in one journal handle, as the kernel's
    /// `ext4_ioctl_setlabel`: at most [`LABEL_MAX`] bytes (longer is
    /// [`Error::InvalidArgument`]), stored NUL-padded. Only the primary
    /// superblock changes; e2fsck and the kernel do not compare labels
    /// with the backups.
    pub fn set_label(&self, label: &[u8]) -> Result<()> {
        if label.len() > LABEL_MAX || label.contains(&0) {
            return Err(Error::InvalidArgument(format!("volume label of {} bytes", label.len())));
        }
        let mut h = self.begin()?;
        self.update_superblock(&mut h, |sb| {
            sb.volume_name = [0; LABEL_MAX];
            sb.volume_name[..label.len()].copy_from_slice(label);
        })?;
        h.finish();
        Ok(())
    }
}

/// The label bytes of `sb`, up to the first NUL.
fn label_of(sb: &Superblock) -> Vec<u8> {
    let end = sb.volume_name.iter().position(|&b| b == 0).unwrap_or(LABEL_MAX);
    sb.volume_name[..end].to_vec()
}
