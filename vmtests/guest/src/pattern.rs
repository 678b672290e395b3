//! File contents both sides know: the guest writes them, the host checks
//! the files the guest leaves behind. Included by the guest program and by
//! the `vmtests` library (`#[path]`), so there is one definition.

/// `len` bytes of a deterministic pattern chosen by `seed`: a byte stream
/// that never repeats with a period of a page or a block, so misplaced or
/// duplicated blocks are visible.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let n = (len - out.len()).min(8);
        out.extend_from_slice(&v[..n]);
    }
    out
}

/// The files the guest leaves under the shared directory for the host to
/// check afterwards: (path relative to the share, exact contents).
pub fn leftovers() -> Vec<(&'static str, Vec<u8>)> {
    let mut trunc = pattern(TRUNC_SEED, TRUNC_KEEP);
    trunc.resize(TRUNC_GROW, 0);
    vec![
        ("vmtest/keep/known.bin", pattern(KNOWN_SEED, KNOWN_LEN)),
        ("vmtest/keep/hard2", pattern(HARD_SEED, HARD_LEN)),
        ("vmtest/keep/trunc.bin", trunc),
        ("vmtest/keep/mmap.bin", mmap_contents()),
        ("vmtest/keep/renamed", pattern(RENAME_SEED, RENAME_LEN)),
    ]
}

/// Seed and length of `vmtest/keep/known.bin` (1 MiB and a bit: more than
/// one extent's worth of pages, an unaligned tail).
pub const KNOWN_SEED: u64 = 1;
/// See [`KNOWN_SEED`].
pub const KNOWN_LEN: usize = (1 << 20) + 4097;
/// Seed and length of the hard-linked pair `vmtest/keep/hard1`, `hard2`.
pub const HARD_SEED: u64 = 2;
/// See [`HARD_SEED`].
pub const HARD_LEN: usize = 5000;
/// Seed of `vmtest/keep/trunc.bin`: written with [`TRUNC_LEN`] bytes, cut to
/// [`TRUNC_KEEP`], extended to [`TRUNC_GROW`] (zeros past the cut).
pub const TRUNC_SEED: u64 = 3;
/// See [`TRUNC_SEED`].
pub const TRUNC_LEN: usize = 10_000;
/// See [`TRUNC_SEED`].
pub const TRUNC_KEEP: usize = 3_000;
/// See [`TRUNC_SEED`].
pub const TRUNC_GROW: usize = 20_000;
/// Seed and length of `vmtest/keep/renamed`.
pub const RENAME_SEED: u64 = 4;
/// See [`RENAME_SEED`].
pub const RENAME_LEN: usize = 777;
/// Seed of the bytes the mmap case stores through its shared mapping.
pub const MMAP_SEED: u64 = 5;
/// Length of `vmtest/keep/mmap.bin`: two pages and a bit.
pub const MMAP_LEN: usize = 2 * 4096 + 100;
/// Number of entries the readdir case creates in `vmtest/big`.
pub const BIG_DIR_ENTRIES: usize = 10_000;
/// The symlink `vmtest/keep/link` points here.
pub const LINK_TARGET: &str = "known.bin";
/// Name and value of the extended attribute left on `vmtest/keep/known.bin`.
pub const XATTR_KEPT: (&str, &[u8]) = ("user.vmtest", b"kept by the guest");

/// What `vmtest/keep/mmap.bin` holds after the mmap case: the file starts
/// as zeros ([`MMAP_LEN`] long); the mapping writes the pattern over all of
/// it except its first 10 bytes, which stay zero.
pub fn mmap_contents() -> Vec<u8> {
    let mut v = pattern(MMAP_SEED, MMAP_LEN);
    v[..10].fill(0);
    v
}

/// The name of entry `i` of the big directory.
pub fn big_name(i: usize) -> String {
    format!("entry-{i:05}-with-a-longer-name")
}

/// Where the host puts the files of the mmap cases in the image before
/// boot (outside `vmtest/`, which the guest program removes first).
pub const PRE_DIR: &str = "pre";

/// How a file prepared for the mmap cases is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `size` bytes of data; files up to 60 bytes (and, with its xattr
    /// part, 61) are inline in an `inline_data` image.
    Data(usize),
    /// A file of `size` bytes with data only in the ranges `(offset, len)`
    /// and holes elsewhere.
    Sparse(usize, &'static [(usize, usize)]),
    /// `size` bytes of data in several extents: the host fragments free
    /// space before writing it (see the host side, `vmtests::mapfiles`).
    Fragmented(usize),
}

/// A file the host prepares for the mmap cases, under [`PRE_DIR`].
#[derive(Debug, Clone, Copy)]
pub struct PreFile {
    /// Its name in [`PRE_DIR`].
    pub name: &'static str,
    /// The seed of its bytes ([`pattern`]).
    pub seed: u64,
    /// Its layout.
    pub layout: Layout,
    /// Whether the host sets the ext4 DAX inode flag on it (guests
    /// mounted `-o dax=inode` then map it through the DAX window).
    pub dax_flag: bool,
}

/// The sparse file's data ranges: the first page, a piece in the middle of
/// the first 2 MiB range, a piece across the first 2 MiB border, the tail.
pub const SPARSE_RANGES: &[(usize, usize)] =
    &[(0, 4096), ((1 << 20) + 100, 5000), ((2 << 20) - 10, 20), ((5 << 20) - 3, 3)];

/// Size of each file the reclaim case maps ([`RECLAIM_FILES`] of them:
/// 96 MiB in all, three times a 32 MiB DAX window).
pub const RECLAIM_FILE_LEN: usize = 16 << 20;
/// Number of reclaim files (`big0`, `big1`, ...).
pub const RECLAIM_FILES: usize = 6;

/// The files of the mmap cases, as the host writes them before boot.
pub fn pre_files() -> Vec<PreFile> {
    let f = |name, seed, layout, dax_flag| PreFile { name, seed, layout, dax_flag };
    let mut v = vec![
        f("empty", 20, Layout::Data(0), false),
        f("one", 21, Layout::Data(1), false),
        f("inline60", 22, Layout::Data(60), true),
        f("inline61", 23, Layout::Data(61), false),
        f("inline_rw", 24, Layout::Data(60), true),
        f("page", 25, Layout::Data(4096), false),
        f("three_mib", 26, Layout::Data((3 << 20) + 123), true),
        f("sparse", 27, Layout::Sparse(5 << 20, SPARSE_RANGES), true),
        f("frag", 28, Layout::Fragmented((1 << 20) + 5), true),
    ];
    const BIG: [&str; RECLAIM_FILES] = ["big0", "big1", "big2", "big3", "big4", "big5"];
    for (i, name) in BIG.into_iter().enumerate() {
        v.push(f(name, 30 + i as u64, Layout::Data(RECLAIM_FILE_LEN), true));
    }
    v
}

impl PreFile {
    /// Its size in bytes.
    pub fn size(&self) -> usize {
        match self.layout {
            Layout::Data(n) | Layout::Sparse(n, _) | Layout::Fragmented(n) => n,
        }
    }

    /// Its whole contents (holes as zeros).
    pub fn contents(&self) -> Vec<u8> {
        match self.layout {
            Layout::Data(n) | Layout::Fragmented(n) => pattern(self.seed, n),
            Layout::Sparse(n, ranges) => {
                let mut v = vec![0u8; n];
                for (i, &(off, len)) in ranges.iter().enumerate() {
                    v[off..off + len].copy_from_slice(&pattern(self.seed + 100 * i as u64, len));
                }
                v
            }
        }
    }
}

/// What the inline mmap case stores through its writable mapping of
/// `pre/inline_rw` (all 60 bytes); the host checks the image afterwards.
pub fn inline_rw_after() -> Vec<u8> {
    pattern(INLINE_RW_SEED, 60)
}

/// Seed of [`inline_rw_after`].
pub const INLINE_RW_SEED: u64 = 7;

/// Name of the `i`th file the crash workload syncs.
pub fn crash_file_name(i: usize) -> String {
    format!("synced{i:05}")
}

/// Seed of the `i`th crash file.
pub fn crash_file_seed(i: usize) -> u64 {
    1000 + i as u64
}

/// Length of the `i`th crash file: inline sizes, a block, several blocks.
pub fn crash_file_len(i: usize) -> usize {
    [10, 60, 100, 4096, 5000, 70_000, 300_000][i % 7]
}

/// Seed of the benchmark's file `bench/seq`.
pub const BENCH_SEED: u64 = 77;

/// The demo's inline file (at the image's root).
pub const DEMO_FILE: &str = "hello.txt";
/// Its contents: short enough to be inline data in the inode.
pub const DEMO_TEXT: &str = "Hello from an inline ext4 file, mapped by DAX!\n";
/// What the demo's guest stores through its writable mapping ...
pub const DEMO_STORE: &str = "EXT4";
/// ... at this byte offset (over the word "ext4").
pub const DEMO_STORE_AT: usize = 21;

/// The demo file after the guest's store.
pub fn demo_after() -> String {
    let mut s = DEMO_TEXT.to_string();
    s.replace_range(DEMO_STORE_AT..DEMO_STORE_AT + DEMO_STORE.len(), DEMO_STORE);
    s
}
