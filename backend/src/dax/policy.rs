//! Which files a guest mounted with `-o dax=inode` accesses through the
//! window (FUSE_ATTR_DAX in their attributes).

use ext4::Inode;
use ext4::disk::inode::FL_DAX;

/// The per-inode DAX policy (`--inode-dax`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InodeDax {
    /// Regular files whose inode has the DAX flag (FS_DAX_FL, set with
    /// `chattr +x`), as the kernel's ext4 decides for `-o dax=inode`.
    #[default]
    Flag,
    /// Every regular file.
    Always,
    /// No file.
    Never,
}

impl InodeDax {
    /// Whether `inode` is marked for DAX under this policy.
    pub fn wants(self, inode: &Inode) -> bool {
        inode.is_reg()
            && match self {
                InodeDax::Flag => inode.has_flag(FL_DAX),
                InodeDax::Always => true,
                InodeDax::Never => false,
            }
    }
}
