//! FUSE node ids and their lookup counts. A node id is the inode number
//! (the root, ext4 inode 2, is FUSE node 1). Every node the client knows
//! holds one open reference on its inode in the core, so an inode that
//! loses its last name while the client still knows it becomes an orphan,
//! not a freed inode whose number could be reused under the client's feet;
//! the last FORGET releases it.

use super::errno::{Errno, FsResult};
use ext4::{Ext4, ROOT_INO};
use fuse_abi::linux::FUSE_ROOT_ID;
use std::collections::HashMap;
use std::sync::Mutex;

/// Lookup counts of the nodes the client holds.
#[derive(Debug, Default)]
pub struct NodeTable {
    counts: Mutex<HashMap<u32, u64>>,
}

/// The FUSE node id of inode `ino`.
pub fn node_of(ino: u32) -> u64 {
    if ino == ROOT_INO { FUSE_ROOT_ID } else { ino as u64 }
}

impl NodeTable {
    /// The inode behind node `node`, which must have been looked up (or be
    /// the root): anything else is a stale or forged id.
    pub fn inode_of(&self, node: u64) -> FsResult<u32> {
        if node == FUSE_ROOT_ID {
            return Ok(ROOT_INO);
        }
        let ino = u32::try_from(node).map_err(|_| Errno::ESTALE)?;
        if ino == ROOT_INO || !self.counts.lock().unwrap().contains_key(&ino) {
            return Err(Errno::ESTALE);
        }
        Ok(ino)
    }

    /// One more lookup of `ino` by the client (LOOKUP, CREATE, MKNOD,
    /// MKDIR, SYMLINK, LINK, READDIRPLUS entries). The first one opens the
    /// inode in the core.
    pub fn add_lookup(&self, fs: &Ext4, ino: u32) {
        if ino == ROOT_INO {
            return;
        }
        let mut counts = self.counts.lock().unwrap();
        let n = counts.entry(ino).or_insert(0);
        if *n == 0 {
            fs.open_inode(ino);
        }
        *n += 1;
    }

    /// The client forgets `nlookup` lookups of `node`; at zero the node is
    /// gone and its inode reference is dropped (which frees an orphan).
    /// Unknown nodes and excess counts are ignored: FORGET has no reply.
    pub fn forget(&self, fs: &Ext4, node: u64, nlookup: u64) {
        let Ok(ino) = u32::try_from(node) else { return };
        let gone = {
            let mut counts = self.counts.lock().unwrap();
            match counts.get_mut(&ino) {
                Some(n) if *n > nlookup => {
                    *n -= nlookup;
                    false
                }
                Some(_) => {
                    counts.remove(&ino);
                    true
                }
                None => false,
            }
        };
        if gone {
            if let Err(e) = fs.close_inode(ino) {
                log::error!("releasing inode {ino} after FORGET: {e}");
            }
        }
    }

    /// Forgets every node (DESTROY, or the end of a session).
    pub fn forget_all(&self, fs: &Ext4) {
        let all: Vec<u32> = self.counts.lock().unwrap().drain().map(|(ino, _)| ino).collect();
        for ino in all {
            if let Err(e) = fs.close_inode(ino) {
                log::error!("releasing inode {ino} at shutdown: {e}");
            }
        }
    }

    /// Number of nodes the client holds (besides the root).
    pub fn len(&self) -> usize {
        self.counts.lock().unwrap().len()
    }

    /// Whether the client holds no node besides the root.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
