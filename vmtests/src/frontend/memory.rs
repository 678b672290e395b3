//! Guest memory for the in-process frontend: one shared memfd mapped as
//! several guest regions, with a gap, and a first-fit allocator of guest
//! buffers.
//!
//! Layout (guest physical addresses):
//!
//! | region | guest range | memfd offset |
//! | --- | --- | --- |
//! | 0 | `[0, A)` | 0 |
//! | 1 | `[A, 2A)` | `A` + one page (a mapping of its own, adjacent in guest space: buffers straddle 0 and 1) |
//! | — | `[2A, 2A + GAP)` | nothing: the gap |
//! | 2 | `[2A + GAP, 2A + GAP + B)` | after region 1 |
//!
//! The backend receives every region's memfd in `SET_MEM_TABLE` and maps it
//! itself; the frontend reads and writes the same pages through its own
//! mapping.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Mutex;

use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

/// The guest memory type of the frontend (no dirty bitmap).
pub type Mem = GuestMemoryMmap<()>;

/// The sizes of the three regions and of the gap.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Size of regions 0 and 1 each (adjacent in guest space).
    pub low: u64,
    /// The unmapped gap after region 1.
    pub gap: u64,
    /// Size of region 2, after the gap.
    pub high: u64,
}

impl Default for Layout {
    /// 2 × 32 MiB adjacent, a 16 MiB gap, 64 MiB: 128 MiB of memfd.
    fn default() -> Layout {
        Layout { low: 32 << 20, gap: 16 << 20, high: 64 << 20 }
    }
}

/// A buffer in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buf {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Guest memory in a memfd, and the allocator of its buffers.
pub struct GuestRam {
    /// The mapped regions.
    pub mem: Mem,
    /// The layout it was made with.
    pub layout: Layout,
    memfd: File,
    /// Free ranges: start → length, per contiguous span.
    free: Mutex<BTreeMap<u64, u64>>,
}

const PAGE: u64 = 4096;

impl GuestRam {
    /// Creates the memfd and maps its regions.
    pub fn new(layout: Layout) -> std::io::Result<GuestRam> {
        let name = c"ext4-vmtests-guest-ram";
        // SAFETY: memfd_create with a valid NUL-terminated name; the
        // returned descriptor is checked and then owned by the File.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let memfd = unsafe { File::from_raw_fd(fd) };
        let r1_off = layout.low + PAGE;
        let r2_off = r1_off + layout.low;
        memfd.set_len(r2_off + layout.high)?;
        let g2 = 2 * layout.low + layout.gap;
        let ranges = [
            (GuestAddress(0), layout.low as usize, Some(FileOffset::new(memfd.try_clone()?, 0))),
            (GuestAddress(layout.low), layout.low as usize, Some(FileOffset::new(memfd.try_clone()?, r1_off))),
            (GuestAddress(g2), layout.high as usize, Some(FileOffset::new(memfd.try_clone()?, r2_off))),
        ];
        let mem = Mem::from_ranges_with_files(ranges.iter()).map_err(std::io::Error::other)?;
        let mut free = BTreeMap::new();
        free.insert(0, 2 * layout.low);
        free.insert(g2, layout.high);
        Ok(GuestRam { mem, layout, memfd, free: Mutex::new(free) })
    }

    /// The memfd behind every region.
    pub fn memfd(&self) -> &File {
        &self.memfd
    }

    /// The guest address where region 0 ends and region 1 begins (a buffer
    /// around it lies in two mappings).
    pub fn seam(&self) -> u64 {
        self.layout.low
    }

    /// The unmapped gap `[start, end)`.
    pub fn gap(&self) -> (u64, u64) {
        (2 * self.layout.low, 2 * self.layout.low + self.layout.gap)
    }

    /// One past the highest guest address.
    pub fn end(&self) -> u64 {
        2 * self.layout.low + self.layout.gap + self.layout.high
    }

    /// The regions as `SET_MEM_TABLE` describes them.
    pub fn regions(&self) -> Vec<vhost::VhostUserMemoryRegionInfo> {
        self.mem
            .iter()
            .map(|r: &GuestRegionMmap<()>| vhost::VhostUserMemoryRegionInfo::from_guest_region(r).expect("file-backed"))
            .collect()
    }

    /// The frontend's own virtual address of guest address `gpa` (vring
    /// addresses are given to the backend in this space).
    pub fn host_addr(&self, gpa: u64) -> u64 {
        self.mem.get_host_address(GuestAddress(gpa)).expect("mapped guest address") as u64
    }

    /// Allocates `len` bytes aligned to `align` (a power of two), first fit;
    /// `None` when no free range is big enough.
    pub fn alloc(&self, len: u64, align: u64) -> Option<Buf> {
        let len = len.max(1).next_multiple_of(8);
        let mut free = self.free.lock().unwrap();
        let (start, flen, addr) = free.iter().find_map(|(&s, &l)| {
            let a = s.next_multiple_of(align);
            (a + len <= s + l).then_some((s, l, a))
        })?;
        free.remove(&start);
        if addr > start {
            free.insert(start, addr - start);
        }
        if addr + len < start + flen {
            free.insert(addr + len, start + flen - addr - len);
        }
        Some(Buf { addr, len })
    }

    /// Allocates exactly `[addr, addr + len)` if it is free (e.g. a buffer
    /// across [`GuestRam::seam`]).
    pub fn alloc_at(&self, addr: u64, len: u64) -> Option<Buf> {
        let len = len.max(1).next_multiple_of(8);
        let mut free = self.free.lock().unwrap();
        let (&s, &l) = free.range(..=addr).next_back()?;
        if addr + len > s + l {
            return None;
        }
        free.remove(&s);
        if addr > s {
            free.insert(s, addr - s);
        }
        if addr + len < s + l {
            free.insert(addr + len, s + l - addr - len);
        }
        Some(Buf { addr, len })
    }

    /// Returns a buffer to the allocator.
    pub fn release(&self, b: Buf) {
        let mut free = self.free.lock().unwrap();
        let (mut start, mut len) = (b.addr, b.len);
        if let Some((&s, &l)) = free.range(..start).next_back()
            && s + l == start
        {
            free.remove(&s);
            start = s;
            len += l;
        }
        if let Some(&l) = free.get(&(start + len)) {
            free.remove(&(start + len));
            len += l;
        }
        free.insert(start, len);
    }

    /// Free bytes (for leak checks).
    pub fn free_bytes(&self) -> u64 {
        self.free.lock().unwrap().values().sum()
    }

    /// Writes `data` at guest address `gpa` (may straddle adjacent regions).
    pub fn write(&self, gpa: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(gpa)).unwrap_or_else(|e| panic!("guest write at {gpa:#x}: {e}"));
    }

    /// Reads `len` bytes at guest address `gpa`.
    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(gpa)).unwrap_or_else(|e| panic!("guest read at {gpa:#x}: {e}"));
        v
    }

    /// Whether `[gpa, gpa + len)` is entirely mapped.
    pub fn is_mapped(&self, gpa: u64, len: u64) -> bool {
        len == 0 || self.mem.check_range(GuestAddress(gpa), len as usize)
    }

    /// Number of regions.
    pub fn num_regions(&self) -> usize {
        self.mem.num_regions()
    }

    /// The guest ranges of the regions.
    pub fn region_ranges(&self) -> Vec<(u64, u64)> {
        self.mem.iter().map(|r| (r.start_addr().0, r.len())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_and_seam() {
        let ram = GuestRam::new(Layout { low: 1 << 20, gap: 1 << 20, high: 1 << 20 }).unwrap();
        assert_eq!(ram.num_regions(), 3);
        let total = ram.free_bytes();
        let a = ram.alloc(100, 64).unwrap();
        let b = ram.alloc(5000, 4096).unwrap();
        assert!(b.addr % 4096 == 0 && b.addr >= a.addr + a.len);
        let s = ram.alloc_at(ram.seam() - 10, 20).unwrap();
        ram.write(s.addr, b"0123456789abcdefghij");
        assert_eq!(ram.read(s.addr, 20), b"0123456789abcdefghij");
        assert!(!ram.is_mapped(ram.gap().0 - 4, 8));
        for x in [a, b, s] {
            ram.release(x);
        }
        assert_eq!(ram.free_bytes(), total);
        assert!(ram.alloc(2 << 20, 8).is_some(), "regions 0 and 1 are one span");
    }
}
