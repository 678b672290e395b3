//! The directory-index name hashes: the legacy hash, half-MD4 and TEA,
//! each over signed or unsigned name bytes (`hash_version` 0..=5).
//!
//! The kernel picks the function from the dx_root's `hash_version` (0..=2)
//! plus 3 when the superblock says names hash as unsigned chars
//! ([`HashVersion::for_directory`]), seeds it with `s_hash_seed` (all zeros
//! selecting the default MD4 seed), and returns a major hash with bit 0
//! cleared (bit 0 marks hash-collision continuation in index entries) and a
//! minor hash. Casefolded and siphash-hashed names are not handled here.

/// `hash_version` of the legacy ("r5"-like) hash.
pub const HASH_LEGACY: u8 = 0;
/// `hash_version` of half-MD4.
pub const HASH_HALF_MD4: u8 = 1;
/// `hash_version` of TEA.
pub const HASH_TEA: u8 = 2;
/// `hash_version` of the legacy hash over unsigned chars (userspace only).
pub const HASH_LEGACY_UNSIGNED: u8 = 3;
/// `hash_version` of half-MD4 over unsigned chars (userspace only).
pub const HASH_HALF_MD4_UNSIGNED: u8 = 4;
/// `hash_version` of TEA over unsigned chars (userspace only).
pub const HASH_TEA_UNSIGNED: u8 = 5;
/// `hash_version` of siphash (casefolded + encrypted directories).
pub const HASH_SIPHASH: u8 = 6;

/// The seed used when `s_hash_seed` is all zeros (the MD4 initial state).
pub const DEFAULT_SEED: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The largest major hash the kernel hands out: `0xfffffffe` is reserved
/// (it is the 32-bit readdir EOF position shifted left), so a name hashing
/// to it is given `0xfffffffc` instead.
const EOF_MAJOR: u32 = 0x7fff_ffff << 1;

/// A directory hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// The original ext3 hash (no minor hash).
    Legacy,
    /// Half of an MD4 round over 32-byte chunks.
    HalfMd4,
    /// TEA in Davies-Meyer mode over 16-byte chunks.
    Tea,
}

/// A hash algorithm together with the signedness of name bytes, i.e. one
/// of the `hash_version` codes 0..=5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashVersion {
    /// The algorithm.
    pub alg: HashAlgorithm,
    /// Whether name bytes are taken as unsigned chars (else signed).
    pub unsigned: bool,
}

impl HashVersion {
    /// Decodes a `hash_version` code 0..=5.
    pub fn from_code(code: u8) -> Option<HashVersion> {
        let alg = match code % 3 {
            0 => HashAlgorithm::Legacy,
            1 => HashAlgorithm::HalfMd4,
            _ => HashAlgorithm::Tea,
        };
        (code <= HASH_TEA_UNSIGNED).then_some(HashVersion { alg, unsigned: code >= HASH_LEGACY_UNSIGNED })
    }

    /// The `hash_version` code 0..=5.
    pub fn code(self) -> u8 {
        let base = match self.alg {
            HashAlgorithm::Legacy => HASH_LEGACY,
            HashAlgorithm::HalfMd4 => HASH_HALF_MD4,
            HashAlgorithm::Tea => HASH_TEA,
        };
        if self.unsigned { base + 3 } else { base }
    }

    /// The version the kernel uses for a directory whose dx_root records
    /// `root_hash_version` (only 0..=2 are valid there) on a file system
    /// whose superblock flags say `unsigned_chars`.
    pub fn for_directory(root_hash_version: u8, unsigned_chars: bool) -> Option<HashVersion> {
        if root_hash_version > HASH_TEA {
            return None;
        }
        HashVersion::from_code(root_hash_version + if unsigned_chars { 3 } else { 0 })
    }
}

/// A name's directory hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DxHash {
    /// Major hash, bit 0 clear; orders names in the index.
    pub major: u32,
    /// Minor hash (always 0 for the legacy hash).
    pub minor: u32,
}

/// Hashes `name` as the kernel's `ext4fs_dirhash` does for `version`,
/// with `seed` (`s_hash_seed`; all zeros selects [`DEFAULT_SEED`]).
pub fn dx_hash(version: HashVersion, seed: &[u32; 4], name: &[u8]) -> DxHash {
    let mut buf = if seed.iter().any(|&w| w != 0) { *seed } else { DEFAULT_SEED };
    let (major, minor) = match version.alg {
        HashAlgorithm::Legacy => (legacy(name, version.unsigned), 0),
        HashAlgorithm::HalfMd4 => {
            for chunk_start in (0..name.len()).step_by(32) {
                let words: [u32; 8] = pack_words(&name[chunk_start..], version.unsigned);
                half_md4_transform(&mut buf, &words);
            }
            (buf[1], buf[2])
        }
        HashAlgorithm::Tea => {
            for chunk_start in (0..name.len()).step_by(16) {
                let words: [u32; 4] = pack_words(&name[chunk_start..], version.unsigned);
                tea_transform(&mut buf, &words);
            }
            (buf[0], buf[1])
        }
    };
    let mut major = major & !1;
    if major == EOF_MAJOR {
        major = EOF_MAJOR - 2;
    }
    DxHash { major, minor }
}

/// A name byte as the hash sees it: sign-extended unless `unsigned`.
fn char_value(b: u8, unsigned: bool) -> u32 {
    if unsigned { b as u32 } else { b as i8 as i32 as u32 }
}

/// The legacy hash (`dx_hack_hash`).
fn legacy(name: &[u8], unsigned: bool) -> u32 {
    let (mut h0, mut h1): (u32, u32) = (0x12a3_fe2d, 0x37ab_e8f9);
    for &b in name {
        let mut h = h1.wrapping_add(h0 ^ char_value(b, unsigned).wrapping_mul(7_152_373));
        if h & 0x8000_0000 != 0 {
            h = h.wrapping_sub(0x7fff_ffff);
        }
        h1 = h0;
        h0 = h;
    }
    h0 << 1
}

/// Packs up to `4 * N` bytes of `rest` (the not yet hashed tail of the
/// name) into `N` words, big-endian within each word, padding with a word
/// made of the length of `rest` repeated in every byte (`str2hashbuf`).
fn pack_words<const N: usize>(rest: &[u8], unsigned: bool) -> [u32; N] {
    let len = rest.len() as u32;
    let pad = len | (len << 8);
    let pad = pad | (pad << 16);
    let mut out = [pad; N];
    let take = rest.len().min(4 * N);
    let mut val = pad;
    for (i, &b) in rest[..take].iter().enumerate() {
        val = char_value(b, unsigned).wrapping_add(val << 8);
        if i % 4 == 3 {
            out[i / 4] = val;
            val = pad;
        }
    }
    if take % 4 != 0 {
        out[take / 4] = val;
    }
    out
}

/// TEA (16 rounds) in Davies-Meyer mode, folding `input` into `buf[0..2]`.
fn tea_transform(buf: &mut [u32; 4], input: &[u32; 4]) {
    const DELTA: u32 = 0x9E37_79B9;
    let (mut sum, mut b0, mut b1) = (0u32, buf[0], buf[1]);
    let [a, b, c, d] = *input;
    for _ in 0..16 {
        sum = sum.wrapping_add(DELTA);
        b0 = b0.wrapping_add((b1 << 4).wrapping_add(a) ^ b1.wrapping_add(sum) ^ (b1 >> 5).wrapping_add(b));
        b1 = b1.wrapping_add((b0 << 4).wrapping_add(c) ^ b0.wrapping_add(sum) ^ (b0 >> 5).wrapping_add(d));
    }
    buf[0] = buf[0].wrapping_add(b0);
    buf[1] = buf[1].wrapping_add(b1);
}

/// The cut-down MD4 transform (three rounds of eight steps).
fn half_md4_transform(buf: &mut [u32; 4], x: &[u32; 8]) {
    const K2: u32 = 0o13240474631;
    const K3: u32 = 0o15666365641;
    let f = |x: u32, y: u32, z: u32| z ^ (x & (y ^ z));
    let g = |x: u32, y: u32, z: u32| (x & y).wrapping_add((x ^ y) & z);
    let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
    let mut s = *buf;
    // Each step: s[i] = rotl(s[i] + fun(s[i+1], s[i+2], s[i+3]) + word, shift),
    // with the register roles rotating a, d, c, b.
    let mut step = |fun: &dyn Fn(u32, u32, u32) -> u32, i: usize, word: u32, shift: u32| {
        let (b, c, d) = (s[(i + 1) % 4], s[(i + 2) % 4], s[(i + 3) % 4]);
        s[i] = s[i].wrapping_add(fun(b, c, d)).wrapping_add(word).rotate_left(shift);
    };
    const ORDER: [usize; 4] = [0, 3, 2, 1];
    let round1 = [(0, 3), (1, 7), (2, 11), (3, 19), (4, 3), (5, 7), (6, 11), (7, 19)];
    let round2 = [(1, 3), (3, 5), (5, 9), (7, 13), (0, 3), (2, 5), (4, 9), (6, 13)];
    let round3 = [(3, 3), (7, 9), (2, 11), (6, 15), (1, 3), (5, 9), (0, 11), (4, 15)];
    for (n, &(w, sh)) in round1.iter().enumerate() {
        step(&f, ORDER[n % 4], x[w], sh);
    }
    for (n, &(w, sh)) in round2.iter().enumerate() {
        step(&g, ORDER[n % 4], x[w].wrapping_add(K2), sh);
    }
    for (n, &(w, sh)) in round3.iter().enumerate() {
        step(&h, ORDER[n % 4], x[w].wrapping_add(K3), sh);
    }
    for (dst, v) in buf.iter_mut().zip(s) {
        *dst = dst.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(code: u8) -> HashVersion {
        HashVersion::from_code(code).unwrap()
    }

    #[test]
    fn version_codes_roundtrip() {
        for code in 0..=5 {
            assert_eq!(v(code).code(), code);
        }
        assert!(HashVersion::from_code(HASH_SIPHASH).is_none());
        assert_eq!(HashVersion::for_directory(1, true), Some(v(4)));
        assert_eq!(HashVersion::for_directory(2, false), Some(v(2)));
        assert_eq!(HashVersion::for_directory(3, false), None);
    }

    // Reference values printed by e2fsprogs 1.47.0
    // `debugfs -R "dx_hash -h ALG -s SEED NAME"`.
    const SEED: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

    #[test]
    fn half_md4_known_value() {
        // `dx_hash -h half_md4 hello` with the default seed.
        assert_eq!(dx_hash(v(1), &[0; 4], b"hello"), DxHash { major: 0x1746da32, minor: 0x420013b5 });
        assert_eq!(dx_hash(v(1), &SEED, b"hello"), dx_hash(v(1), &[0; 4], b"hello"));
    }

    #[test]
    fn all_versions_match_debugfs() {
        // `dx_hash -h CODE -s 01020304-0506-0708-090a-0b0c0d0e0f10 NAME`.
        let seed = [0x0403_0201, 0x0807_0605, 0x0c0b_0a09, 0x100f_0e0d];
        let long = b"a_name_that_is_longer_than_thirty_two_bytes_for_md4";
        let names: [&[u8]; 5] = [b"a", b"hello", "gr\u{fc}n".as_bytes(), b"\xff\xfe", long];
        let want: [[(u32, u32); 5]; 6] = [
            [(0xe74b53e2, 0), (0x32252546, 0), (0xc202f150, 0), (0xdd39686e, 0), (0x297013c4, 0)],
            [
                (0x8d08ec4c, 0x2fbccd78),
                (0xe2ddf968, 0xc8bc0924),
                (0x1674daf0, 0xd175e9e3),
                (0xe4936b1c, 0x55747a42),
                (0x06a8abdc, 0x9d54a388),
            ],
            [
                (0xf53528f0, 0xea54fb01),
                (0x1a5692b6, 0x2fd9857d),
                (0x62947a52, 0x1ebe7f6a),
                (0x065bcc7e, 0x8f0c62a4),
                (0xd1bb8000, 0xd81166a1),
            ],
            [(0xe74b53e2, 0), (0x32252546, 0), (0x98481b52, 0), (0xd85d70c6, 0), (0x297013c4, 0)],
            [
                (0x8d08ec4c, 0x2fbccd78),
                (0xe2ddf968, 0xc8bc0924),
                (0xee18ce9c, 0x82821a6c),
                (0x006959f8, 0xe75a85b8),
                (0x06a8abdc, 0x9d54a388),
            ],
            [
                (0xf53528f0, 0xea54fb01),
                (0x1a5692b6, 0x2fd9857d),
                (0x5bb72d54, 0xdca7b99d),
                (0xd0011f1e, 0x42142bf2),
                (0xd1bb8000, 0xd81166a1),
            ],
        ];
        for (code, row) in want.iter().enumerate() {
            for (name, &(major, minor)) in names.iter().zip(row) {
                assert_eq!(dx_hash(v(code as u8), &seed, name), DxHash { major, minor }, "version {code} {name:x?}");
            }
        }
    }

    #[test]
    fn major_bit0_clear_and_eof_avoided() {
        for name in [&b"a"[..], b"bb", b"some longer name exceeding thirty-two bytes......"] {
            for code in 0..=5 {
                let h = dx_hash(v(code), &[1, 2, 3, 4], name);
                assert_eq!(h.major & 1, 0);
                assert_ne!(h.major, EOF_MAJOR);
            }
        }
    }

    #[test]
    fn signedness_matters_only_for_high_bytes() {
        for alg in 0..=2 {
            assert_eq!(dx_hash(v(alg), &[0; 4], b"plain"), dx_hash(v(alg + 3), &[0; 4], b"plain"));
            assert_ne!(dx_hash(v(alg), &[0; 4], "grün".as_bytes()), dx_hash(v(alg + 3), &[0; 4], "grün".as_bytes()));
        }
        assert_eq!(dx_hash(v(0), &[0; 4], b"x").minor, 0);
    }
}
