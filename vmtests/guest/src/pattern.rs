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
