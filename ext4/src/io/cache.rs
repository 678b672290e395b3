//! The metadata buffer cache: recently read metadata blocks kept in memory
//! within a byte budget. Sharded so that concurrent readers rarely contend;
//! eviction is CLOCK (second chance) per shard.
//!
//! Two kinds of writers fill it. The transaction manager *publishes* the
//! newest version of a block ([`BlockCache::insert`], [`BlockCache::invalidate`]);
//! a reader that missed *fills* it with what it read from the device. A fill
//! can race a publish: the reader read the old home copy, a handle then
//! published a newer one (and a checkpoint may even have written it home and
//! dropped it from the dirty map), and only then the reader's insert lands —
//! the cache would serve the old version from then on and the next handle
//! would write it back (a lost update; with a bitmap block, a block handed
//! out twice). So a fill carries a [`FillTicket`] taken before the reader
//! looked anywhere, and lands only if no publish touched the block's shard
//! since ([`BlockCache::fill`]). A refused fill costs one later re-read.

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
    /// Bumped by every publish into this shard (insert, invalidate, clear).
    generation: u64,
}

/// Taken by a reader before it looks for a block anywhere: lets its later
/// [`BlockCache::fill`] find out whether a newer version was published
/// meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTicket {
    block: u64,
    generation: u64,
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

    /// A ticket for a later [`BlockCache::fill`] of `block`.
    pub fn fill_ticket(&self, block: u64) -> FillTicket {
        FillTicket { block, generation: self.shard(block).generation }
    }

    /// Caches `data`, read from the device, as `ticket`'s block — unless a
    /// newer version was published into the block's shard since the ticket
    /// was taken (then the cache is left alone). Returns whether it landed.
    pub fn fill(&self, ticket: FillTicket, data: Arc<[u8]>) -> bool {
        let mut s = self.shard(ticket.block);
        if s.generation != ticket.generation || s.index.contains_key(&ticket.block) {
            return false;
        }
        self.put(&mut s, ticket.block, data);
        true
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

    /// Publishes `data` as the newest contents of `block`, replacing any
    /// older copy (and refusing fills that started before).
    pub fn insert(&self, block: u64, data: Arc<[u8]>) {
        let mut s = self.shard(block);
        s.generation += 1;
        self.put(&mut s, block, data);
    }

    fn put(&self, s: &mut Shard, block: u64, data: Arc<[u8]>) {
        if data.len() > self.shard_budget {
            if let Some(i) = s.index.get(&block).copied() {
                s.remove(i);
            }
            return;
        }
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

    /// Drops `block` from the cache (a publish: fills that started before
    /// are refused).
    pub fn invalidate(&self, block: u64) {
        let mut s = self.shard(block);
        s.generation += 1;
        if let Some(i) = s.index.get(&block).copied() {
            s.remove(i);
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        for sh in &self.shards {
            let mut s = sh.lock().unwrap_or_else(|e| e.into_inner());
            let generation = s.generation + 1;
            *s = Shard { generation, ..Shard::default() };
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

    #[test]
    fn fill_after_a_publish_is_refused() {
        let c = BlockCache::new(1 << 20);
        // A reader takes its ticket, reads the old home copy; meanwhile the
        // newest version is published and then dropped again (evicted or
        // invalidated): the reader's fill must not land.
        let t = c.fill_ticket(7);
        c.insert(7, vec![2; 1024].into());
        c.invalidate(7);
        assert!(!c.fill(t, vec![1; 1024].into()));
        assert!(c.get(7).is_none());
        // A fill with no publish in between lands; a second one does not
        // replace it.
        let t = c.fill_ticket(7);
        assert!(c.fill(t, vec![3; 1024].into()));
        assert!(!c.fill(t, vec![4; 1024].into()));
        assert_eq!(c.get(7).unwrap()[0], 3);
        let t = c.fill_ticket(8);
        c.clear();
        assert!(!c.fill(t, vec![1; 1024].into()), "clear is a publish too");
    }
}
