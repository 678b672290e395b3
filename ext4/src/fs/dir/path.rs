//! Path resolution from the root directory.

use crate::disk::inode::ROOT_INO;
use crate::error::{Error, Result};
use crate::fs::Ext4;

/// Most symbolic links followed in one resolution, as Linux's MAXSYMLINKS.
const MAX_SYMLINKS: u32 = 40;

impl Ext4 {
    /// Resolves an absolute or root-relative path to an inode number.
    /// Symbolic links in the middle of the path are followed; a final
    /// symlink is followed only when `follow_final` is set.
    pub fn resolve_path(&self, path: &[u8], follow_final: bool) -> Result<u32> {
        let mut budget = MAX_SYMLINKS;
        self.resolve_from(ROOT_INO, path, follow_final, &mut budget)
    }

    fn resolve_from(&self, start: u32, path: &[u8], follow_final: bool, budget: &mut u32) -> Result<u32> {
        let mut cur = if path.first() == Some(&b'/') { ROOT_INO } else { start };
        let comps: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
        for (i, comp) in comps.iter().enumerate() {
            let dir = self.read_live_inode(cur)?;
            if !dir.is_dir() {
                return Err(Error::NotADirectory(cur));
            }
            let entry = self.lookup(&dir, comp)?.ok_or(Error::NotFound)?;
            let last = i + 1 == comps.len();
            let child = self.read_live_inode(entry.ino)?;
            if child.is_symlink() && (!last || follow_final) {
                if *budget == 0 {
                    return Err(Error::SymlinkLoop);
                }
                *budget -= 1;
                let target = self.read_link(&child)?;
                cur = self.resolve_from(cur, &target, true, budget)?;
            } else {
                cur = entry.ino;
            }
        }
        Ok(cur)
    }
}
