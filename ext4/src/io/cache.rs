//! The metadata buffer cache: recently read metadata blocks kept in memory
//! within a byte budget. Sharded so that concurrent readers rarely contend;
//! eviction is CLOCK (second chance) per shard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

struct Entry {
    block: u64,
    data: Arc<[u8]>,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    slots: Vec<Entry>,
    index: HashMap<u64, usize>,
    hand: usize,
    bytes: usize,
}

/// A cache of metadata blocks keyed by physical block number.
pub struct BlockCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
}

impl BlockCache {
    /// A cache holding at most about `budget_bytes` of block data.
    pub fn new(budget_bytes: usize) -> Self {
        BlockCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: budget_bytes / SHARDS,
        }
    }

    fn shard(&self, block: u64) -> std::sync::MutexGuard<'_, Shard> {
        let i = (block as usize ^ (block >> 16) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached contents of `block`, if present.
    pub fn get(&self, block: u64) -> Option<Arc<[u8]>> {
        let mut s = self.shard(block);
        let i = *s.index.get(&block)?;
        s.slots[i].referenced = true;
        Some(s.slots[i].data.clone())
    }

    /// Caches `data` as the contents of `block`, replacing any older copy.
    pub fn insert(&self, block: u64, data: Arc<[u8]>) {
        if data.len() > self.shard_budget {
            return;
        }
        let mut s = self.shard(block);
        if let Some(&i) = s.index.get(&block) {
            s.bytes = s.bytes - s.slots[i].data.len() + data.len();
            s.slots[i].data = data;
            s.slots[i].referenced = true;
            return;
        }
        while s.bytes + data.len() > self.shard_budget && !s.slots.is_empty() {
            s.evict_one();
        }
        s.bytes += data.len();
        let i = s.slots.len();
        s.slots.push(Entry { block, data, referenced: false });
        s.index.insert(block, i);
    }

    /// Drops `block` from the cache.
    pub fn invalidate(&self, block: u64) {
        let mut s = self.shard(block);
        if let Some(i) = s.index.get(&block).copied() {
            s.remove(i);
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        for sh in &self.shards {
            *sh.lock().unwrap_or_else(|e| e.into_inner()) = Shard::default();
        }
    }

    /// Bytes currently cached.
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).bytes).sum()
    }
}

impl Shard {
    fn evict_one(&mut self) {
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let h = self.hand;
            if self.slots[h].referenced {
                self.slots[h].referenced = false;
                self.hand += 1;
            } else {
                self.remove(h);
                return;
            }
        }
    }

    fn remove(&mut self, i: usize) {
        let e = self.slots.swap_remove(i);
        self.index.remove(&e.block);
        self.bytes -= e.data.len();
        if i < self.slots.len() {
            let moved = self.slots[i].block;
            self.index.insert(moved, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respects_budget_and_keeps_referenced() {
        let c = BlockCache::new(16 * 4096);
        // All blocks below map to one shard only if they hash alike; use the
        // total budget as the invariant.
        for b in 0..1000u64 {
            c.insert(b, vec![b as u8; 4096].into());
            assert!(c.bytes() <= 16 * 4096);
        }
        c.insert(5000, vec![1; 4096].into());
        assert_eq!(c.get(5000).unwrap()[0], 1);
        c.invalidate(5000);
        assert!(c.get(5000).is_none());
    }
}
