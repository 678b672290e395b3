//! Access times of reads: READ, READDIR/READDIRPLUS and READLINK move the
//! inode's atime through the core's policy ([`ext4::Ext4::touch_atime`]:
//! relatime, strictatime or noatime, decided in memory and written with a
//! later transaction). A file read through a descriptor opened with
//! O_NOATIME keeps its atime: READ and READDIR carry the descriptor's
//! current flags (`fuse_read_in.flags`, the kernel's `f_flags`, which
//! F_SETFL may change after open), and the kernel's `file_accessed` looks
//! at those too.
//!
//! The client needs no notification: it drops the atime it cached after
//! each READ, READDIR and READLINK (`fuse_invalidate_atime`), so the next
//! stat asks, and GETATTR shows the pending atime.

use super::Ext4Fs;

impl Ext4Fs {
    /// A read of `node` succeeded through a descriptor with `open_flags`
    /// (0 for READLINK): its atime moves where the policy says so. An
    /// error here never fails the read that already happened; it is logged.
    pub fn accessed(&self, node: u64, open_flags: u32) {
        if open_flags & libc::O_NOATIME as u32 != 0 {
            return;
        }
        let Ok(ino) = self.nodes.inode_of(node) else { return };
        if let Err(e) = self.fs.touch_atime(ino) {
            log::warn!("atime of inode {ino} not updated: {e}");
        }
    }
}
