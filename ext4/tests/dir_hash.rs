//! The directory hashes against e2fsprogs: `debugfs dx_hash` for every
//! hash version (legacy, half_md4, tea; signed and unsigned), with the
//! image's own seed and an explicit one, over names of every length with
//! bytes >= 0x80 (where signed and unsigned chars differ).

mod common;

use common::Scratch;
use common::tools::mkfs;
use ext4::disk::dx_hash::{DxHash, HashVersion, dx_hash};
use ext4::{Ext4, OpenOptions};
use std::process::Command;

/// Deterministic names: ASCII letters, digits, '.', '-', '_' and high
/// bytes, of lengths 1..=255 (what debugfs's command parser passes through).
fn names() -> Vec<Vec<u8>> {
    const ASCII: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_";
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    for i in 0..240usize {
        let len = match i % 4 {
            0 => 1 + i % 16,
            1 => 17 + i % 32,
            2 => 200 + i % 56,
            _ => 1 + (next() % 255) as usize,
        };
        let name: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                if r % 3 == 0 { 0x80 + (r >> 8) as u8 % 0x80 } else { ASCII[(r >> 8) as usize % ASCII.len()] }
            })
            .collect();
        // A leading '-' would read as an option.
        let name = if name[0] == b'-' { [b"x".as_slice(), &name[1..]].concat() } else { name };
        out.push(name);
    }
    out.push("grün".as_bytes().to_vec());
    out.push(vec![0xff]);
    out
}

/// Runs the dx_hash commands through one `debugfs -f` and parses the hashes.
fn debugfs_hashes(img: &std::path::Path, dir: &Scratch, cmds: &[Vec<u8>]) -> Vec<DxHash> {
    let file = dir.join("cmds");
    std::fs::write(&file, cmds.iter().flat_map(|c| c.iter().copied().chain([b'\n'])).collect::<Vec<u8>>()).unwrap();
    let out = Command::new("debugfs").arg("-f").arg(&file).arg(img).output().unwrap();
    assert!(out.status.success());
    let hex = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).unwrap(), 16).unwrap();
    let hashes: Vec<DxHash> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"Hash of "))
        .map(|l| {
            // "Hash of NAME is 0xMAJOR (minor 0xMINOR)"
            let at = l.windows(6).rposition(|w| w == b" is 0x").unwrap();
            let tail = &l[at + 6..];
            let sp = tail.iter().position(|&b| b == b' ').unwrap();
            let minor = &tail[sp + " (minor 0x".len()..tail.len() - 1];
            DxHash { major: hex(&tail[..sp]), minor: hex(minor) }
        })
        .collect();
    assert_eq!(hashes.len(), cmds.len(), "debugfs answered every command");
    hashes
}

/// The UUID spelling of a hash seed, as `dx_hash -s` takes it (debugfs
/// 1.47.0 does not default to the image's seed).
fn seed_uuid(seed: &[u32; 4]) -> String {
    let b: Vec<u8> = seed.iter().flat_map(|w| w.to_le_bytes()).collect();
    let hex = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("{}-{}-{}-{}-{}", hex(0..4), hex(4..6), hex(6..8), hex(8..10), hex(10..16))
}

#[test]
fn hashes_match_debugfs() {
    let dir = Scratch::new("dir-hash");
    let img = dir.join("fs.img");
    mkfs(&img, "4M", None, &["-t", "ext4"]);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let image_seed = fs.superblock().hash_seed;
    assert!(image_seed.iter().any(|&w| w != 0), "mke2fs sets a random seed");
    let uuid = "01020304-0506-0708-090a-0b0c0d0e0f10";
    let explicit = [0x0403_0201, 0x0807_0605, 0x0c0b_0a09, 0x100f_0e0d];
    let names = names();
    let mut cmds = Vec::new();
    let mut want = Vec::new();
    for code in 0..=5u8 {
        let version = HashVersion::from_code(code).unwrap();
        for name in &names {
            for (seed, arg) in [
                (image_seed, format!("-s {} ", seed_uuid(&image_seed))),
                (explicit, format!("-s {uuid} ")),
                ([0; 4], "-s 00000000-0000-0000-0000-000000000000 ".to_string()),
            ] {
                let mut c = format!("dx_hash -h {code} {arg}").into_bytes();
                c.extend_from_slice(name);
                cmds.push(c);
                want.push((code, name.clone(), seed, dx_hash(version, &seed, name)));
            }
        }
    }
    let got = debugfs_hashes(&img, &dir, &cmds);
    let mut differ_by_sign = 0;
    for ((code, name, seed, ours), theirs) in want.iter().zip(&got) {
        assert_eq!(ours, theirs, "hash version {code} of {name:x?} with seed {seed:x?}");
        if *code < 3 {
            let unsigned = HashVersion::from_code(code + 3).unwrap();
            differ_by_sign += (dx_hash(unsigned, &image_seed, name) != *ours) as usize;
        }
    }
    assert!(differ_by_sign > 0, "the names exercise signed/unsigned differences");
}
