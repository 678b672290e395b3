//! The window's bookkeeping: which piece of which file sits where, as
//! plain data with the operations the window needs (build from a core
//! mapping, zero a freed range, clip, diff), so they are tested apart from
//! any frontend.

use super::zero::SealedMemfd;
use ext4::fs::data::dax::DaxPiece;
use std::sync::Arc;

/// What backs one piece of the window.
#[derive(Clone, Debug)]
pub enum Backing {
    /// The image file, from this byte offset.
    Image {
        /// Byte offset in the image file.
        image_offset: u64,
        /// Mapped writable.
        writable: bool,
    },
    /// The shared zero memfd (read-only).
    Zero,
    /// A private sealed copy of the file's bytes (read-only image, inline
    /// file), from this offset in the memfd.
    Private(Arc<SealedMemfd>, u64),
}

impl PartialEq for Backing {
    fn eq(&self, other: &Backing) -> bool {
        match (self, other) {
            (Backing::Image { image_offset: a, writable: w }, Backing::Image { image_offset: b, writable: v }) => {
                a == b && w == v
            }
            (Backing::Zero, Backing::Zero) => true,
            (Backing::Private(a, x), Backing::Private(b, y)) => Arc::ptr_eq(a, b) && x == y,
            _ => false,
        }
    }
}

/// One contiguous range of the window mapped with one SHMEM_MAP.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// Offset in the window.
    pub shm_offset: u64,
    /// Offset in the mapped file.
    pub file_offset: u64,
    /// Length in bytes (whole pages).
    pub len: u64,
    /// What the frontend maps there.
    pub backing: Backing,
}

impl Piece {
    /// The part of this piece at file offsets `from..to` (inside it).
    fn sub(&self, from: u64, to: u64) -> Piece {
        let skip = from - self.file_offset;
        let backing = match &self.backing {
            Backing::Image { image_offset, writable } => {
                Backing::Image { image_offset: image_offset + skip, writable: *writable }
            }
            Backing::Zero => Backing::Zero,
            Backing::Private(m, off) => Backing::Private(m.clone(), off + skip),
        };
        Piece { shm_offset: self.shm_offset + skip, file_offset: from, len: to - from, backing }
    }

    fn file_end(&self) -> u64 {
        self.file_offset + self.len
    }
}

/// One guest mapping (one FUSE_SETUPMAPPING): a file range at a window
/// offset, made of pieces, with the core pins that keep its blocks.
#[derive(Debug)]
pub struct Slot {
    /// Inode mapped; 0 once that inode was freed (the slot then shows
    /// zeros and waits for the guest to remove it).
    pub ino: u32,
    /// Offset of the range in the file.
    pub file_offset: u64,
    /// Length of the range.
    pub len: u64,
    /// The guest asked for a writable mapping.
    pub writable: bool,
    /// What is mapped, in window order, covering the whole range.
    pub pieces: Vec<Piece>,
    /// Core pins ([`ext4::Ext4::pin_dax`]) covering every image piece.
    pub pins: Vec<u64>,
}

/// The pieces of a core mapping placed at window offset `shm_start` for
/// the file range starting at `file_start`.
pub fn from_core(shm_start: u64, file_start: u64, core: &[DaxPiece], writable: bool) -> Vec<Piece> {
    core.iter()
        .map(|p| match *p {
            DaxPiece::Image { file_offset, image_offset, len } => Piece {
                shm_offset: shm_start + (file_offset - file_start),
                file_offset,
                len,
                backing: Backing::Image { image_offset, writable },
            },
            DaxPiece::Zero { file_offset, len } => {
                Piece { shm_offset: shm_start + (file_offset - file_start), file_offset, len, backing: Backing::Zero }
            }
        })
        .collect()
}

/// `pieces` with every image byte at file offsets `from..to` replaced by
/// zeros (those blocks are about to be freed or moved).
pub fn zero_file_range(pieces: &[Piece], from: u64, to: u64) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len() + 2);
    for p in pieces {
        let (a, b) = (p.file_offset.max(from), p.file_end().min(to));
        if a >= b || !matches!(p.backing, Backing::Image { .. }) {
            out.push(p.clone());
            continue;
        }
        if p.file_offset < a {
            out.push(p.sub(p.file_offset, a));
        }
        out.push(Piece { backing: Backing::Zero, ..p.sub(a, b) });
        if b < p.file_end() {
            out.push(p.sub(b, p.file_end()));
        }
    }
    out
}

/// The parts of `pieces` inside window offsets `from..to`.
pub fn clip(pieces: &[Piece], from: u64, to: u64) -> Vec<Piece> {
    pieces
        .iter()
        .filter_map(|p| {
            let (a, b) = (p.shm_offset.max(from), (p.shm_offset + p.len).min(to));
            (a < b).then(|| p.sub(p.file_offset + (a - p.shm_offset), p.file_offset + (b - p.shm_offset)))
        })
        .collect()
}

/// What changes from `old` to `new`: the pieces to unmap (exactly as they
/// were mapped) and the pieces to map. Pieces equal in both stay.
pub fn diff<'a>(old: &'a [Piece], new: &'a [Piece]) -> (Vec<&'a Piece>, Vec<&'a Piece>) {
    let gone = old.iter().filter(|p| !new.contains(p)).collect();
    let added = new.iter().filter(|p| !old.contains(p)).collect();
    (gone, added)
}

/// Logical block ranges `(first, count)` of the image pieces, merged.
pub fn image_blocks(pieces: &[Piece], block_size: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for p in pieces.iter().filter(|p| matches!(p.backing, Backing::Image { .. })) {
        let (first, end) = (p.file_offset / block_size, p.file_end().div_ceil(block_size));
        match out.last_mut() {
            Some((f, n)) if *f + *n >= first => *n = (*n).max(end - *f),
            _ => out.push((first, end - first)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(shm: u64, file: u64, len: u64, at: u64) -> Piece {
        Piece { shm_offset: shm, file_offset: file, len, backing: Backing::Image { image_offset: at, writable: true } }
    }

    #[test]
    fn core_pieces_land_at_their_window_offsets() {
        let core = [
            DaxPiece::Image { file_offset: 1 << 21, image_offset: 40960, len: 8192 },
            DaxPiece::Zero { file_offset: (1 << 21) + 8192, len: 4096 },
        ];
        let p = from_core(4 << 21, 1 << 21, &core, false);
        assert_eq!(p[0].shm_offset, 4 << 21);
        assert_eq!(p[1].shm_offset, (4 << 21) + 8192);
        assert_eq!(p[0].backing, Backing::Image { image_offset: 40960, writable: false });
    }

    #[test]
    fn zeroing_a_freed_range_splits_image_pieces() {
        let p = vec![img(0, 0, 16384, 1 << 20)];
        let z = zero_file_range(&p, 4096, 8192);
        assert_eq!(z.len(), 3);
        assert_eq!(z[0], img(0, 0, 4096, 1 << 20));
        assert_eq!(z[1].backing, Backing::Zero);
        assert_eq!((z[1].shm_offset, z[1].len), (4096, 4096));
        assert_eq!(z[2], img(8192, 8192, 8192, (1 << 20) + 8192));
        // Outside the range, nothing changes.
        assert_eq!(zero_file_range(&p, 16384, u64::MAX), p);
    }

    #[test]
    fn clipping_keeps_offsets_consistent() {
        let p = vec![img(0, 0, 8192, 0), img(8192, 8192, 8192, 1 << 20)];
        let c = clip(&p, 4096, 12288);
        assert_eq!(c, vec![img(4096, 4096, 4096, 4096), img(8192, 8192, 4096, 1 << 20)]);
    }

    #[test]
    fn diff_unmaps_exactly_what_was_mapped() {
        let old = vec![img(0, 0, 8192, 0)];
        let new = zero_file_range(&old, 4096, 8192);
        let (gone, added) = diff(&old, &new);
        assert_eq!(gone, vec![&old[0]]);
        assert_eq!(added.len(), 2);
        let (g, a) = diff(&new, &new);
        assert!(g.is_empty() && a.is_empty());
    }

    #[test]
    fn image_blocks_merge() {
        let p = vec![img(0, 0, 8192, 0), img(8192, 8192, 4096, 1 << 20), img(65536, 65536, 4096, 0)];
        assert_eq!(image_blocks(&p, 4096), vec![(0, 3), (16, 1)]);
    }
}
