//! The block and inode allocators against e2fsprogs as the oracle.
//!
//! For each kind of image (ext4 with metadata_csum and flex_bg at 1 KiB and
//! 4 KiB blocks, ext4 with the crc16 uninit_bg checksums and 32-byte
//! descriptors, meta_bg, ext3, ext2 without checksums, and larger images
//! with BLOCK_UNINIT / INODE_UNINIT groups): allocate runs and inodes
//! through handles, sync, and check that
//! - `e2fsck -fn` reports exactly the allocated blocks and inodes as bitmap
//!   differences (nothing references them), finds the free counts of
//!   descriptors and superblock consistent with the bitmaps, and the
//!   directory counts changed exactly by the directories allocated;
//! - `dumpe2fs` shows the descriptors as we see them, `debugfs testb/testi`
//!   agree;
//!
//! then free everything and check that `e2fsck -fn` is clean and the free
//! counts are back where mke2fs left them.

mod common;

use common::Scratch;
use common::tools::{debugfs, fsck, mkfs, run};
use ext4::disk::group_desc::{BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use ext4::{Error, Ext4, OpenOptions, ROOT_INO};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// What `e2fsck -fn` reported about bitmaps and counts.
#[derive(Debug, Default)]
struct FsckReport {
    /// Blocks marked in the bitmap but used by nothing ("-").
    blocks_unused: BTreeSet<u64>,
    /// Blocks used but not marked ("+").
    blocks_unmarked: BTreeSet<u64>,
    inodes_unused: BTreeSet<u64>,
    inodes_unmarked: BTreeSet<u64>,
    /// Group -> (stored, counted).
    group_free_blocks: BTreeMap<u32, (u64, u64)>,
    group_free_inodes: BTreeMap<u32, (u64, u64)>,
    group_dirs: BTreeMap<u32, (u64, u64)>,
    sb_free_blocks: Option<(u64, u64)>,
    sb_free_inodes: Option<(u64, u64)>,
}

/// Parses " -(10--12) -15 +20" into the two sets.
fn parse_differences(text: &str, minus: &mut BTreeSet<u64>, plus: &mut BTreeSet<u64>) {
    for tok in text.split_whitespace() {
        let (set, rest) = match tok.as_bytes()[0] {
            b'-' => (&mut *minus, &tok[1..]),
            b'+' => (&mut *plus, &tok[1..]),
            _ => continue,
        };
        let rest = rest.trim_start_matches('(').trim_end_matches(')');
        let (a, b) = match rest.split_once("--") {
            Some((a, b)) => (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()),
            None => {
                let v = rest.parse::<u64>().unwrap_or_else(|_| panic!("bad difference token {tok:?}"));
                (v, v)
            }
        };
        set.extend(a..=b);
    }
}

/// Parses "(12, counted=34)." into (12, 34).
fn parse_counts(text: &str) -> (u64, u64) {
    let inner = text.trim().trim_start_matches('(');
    let (a, rest) = inner.split_once(", counted=").unwrap_or_else(|| panic!("bad count text {text:?}"));
    let b: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    (a.parse().unwrap(), b.parse().unwrap())
}

fn parse_fsck(out: &str) -> FsckReport {
    let mut r = FsckReport::default();
    for line in out.lines() {
        if let Some(t) = line.strip_prefix("Block bitmap differences:") {
            parse_differences(t, &mut r.blocks_unused, &mut r.blocks_unmarked);
        } else if let Some(t) = line.strip_prefix("Inode bitmap differences:") {
            parse_differences(t, &mut r.inodes_unused, &mut r.inodes_unmarked);
        } else if let Some(t) = line.strip_prefix("Free blocks count wrong for group #") {
            let (g, rest) = t.split_once(' ').unwrap();
            r.group_free_blocks.insert(g.parse().unwrap(), parse_counts(rest));
        } else if let Some(t) = line.strip_prefix("Free inodes count wrong for group #") {
            let (g, rest) = t.split_once(' ').unwrap();
            r.group_free_inodes.insert(g.parse().unwrap(), parse_counts(rest));
        } else if let Some(t) = line.strip_prefix("Directories count wrong for group #") {
            let (g, rest) = t.split_once(' ').unwrap();
            r.group_dirs.insert(g.parse().unwrap(), parse_counts(rest));
        } else if let Some(t) = line.strip_prefix("Free blocks count wrong ") {
            r.sb_free_blocks = Some(parse_counts(t));
        } else if let Some(t) = line.strip_prefix("Free inodes count wrong ") {
            r.sb_free_inodes = Some(parse_counts(t));
        }
    }
    r
}

/// One group as `dumpe2fs` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DumpGroup {
    free_blocks: u64,
    free_inodes: u64,
    dirs: u64,
    unused_inodes: Option<u64>,
    block_uninit: bool,
    inode_uninit: bool,
}

fn dumpe2fs(img: &Path) -> Vec<DumpGroup> {
    let out = run(Command::new("dumpe2fs").arg(img));
    let mut groups = Vec::new();
    let mut flags = (false, false);
    for line in out.lines() {
        if line.starts_with("Group ") {
            flags = (line.contains("BLOCK_UNINIT"), line.contains("INODE_UNINIT"));
        } else if line.contains(" free blocks, ") {
            let nums: Vec<u64> =
                line.split(',').map(|part| part.split_whitespace().next().unwrap().parse().unwrap()).collect();
            groups.push(DumpGroup {
                free_blocks: nums[0],
                free_inodes: nums[1],
                dirs: nums[2],
                unused_inodes: nums.get(3).copied(),
                block_uninit: flags.0,
                inode_uninit: flags.1,
            });
        }
    }
    groups
}

/// Our view of every group, in the same shape.
fn our_groups(fs: &Ext4) -> Vec<DumpGroup> {
    let csum = fs.has_uninit_groups();
    (0..fs.geometry().group_count)
        .map(|g| {
            let gd = fs.group_desc(g).unwrap();
            DumpGroup {
                free_blocks: gd.free_blocks_count() as u64,
                free_inodes: gd.free_inodes_count() as u64,
                dirs: gd.used_dirs_count() as u64,
                unused_inodes: csum.then_some(gd.itable_unused() as u64),
                block_uninit: csum && gd.flags() & BG_BLOCK_UNINIT != 0,
                inode_uninit: csum && gd.flags() & BG_INODE_UNINIT != 0,
            }
        })
        .collect()
}

fn open_rw(img: &Path) -> Ext4 {
    Ext4::open(img, &OpenOptions::default()).unwrap()
}

fn open_ro(img: &Path) -> Ext4 {
    Ext4::open(img, &OpenOptions { read_only: true, ..Default::default() }).unwrap()
}

/// Deterministic xorshift for workload choices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a workload allocated.
#[derive(Debug, Default)]
struct Allocated {
    runs: Vec<(u64, u64)>,
    inodes: Vec<(u32, bool)>,
}

impl Allocated {
    fn blocks(&self) -> BTreeSet<u64> {
        self.runs.iter().flat_map(|&(s, l)| s..s + l).collect()
    }
}

/// Allocates runs with goals spread over all groups (plus `extra_goals`),
/// and inodes: top-level directories, files and subdirectories, and files
/// under parents in far groups. Checks every result against the previous
/// ones. Handles are finished in batches, some synced, one discarded.
fn allocate(fs: &Ext4, extra_goals: &[u64], far_parents: &[u32]) -> Allocated {
    let geo = fs.geometry().clone();
    let sb = *fs.superblock();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut got = Allocated::default();
    let mut taken = BTreeSet::new();
    let lens = [1u64, 3, 8, 64, 200, 1000, 40000];
    let mut goals: Vec<u64> = vec![0, fs.data_goal(ROOT_INO, true), fs.data_goal(ROOT_INO, false)];
    for g in 0..geo.group_count {
        goals.push(geo.group_first_block(g) + rng.below(geo.blocks_in_group(g) as u64));
    }
    goals.extend_from_slice(extra_goals);
    let mut round = 0;
    for chunk in goals.chunks(3) {
        let mut h = fs.begin().unwrap();
        for &goal in chunk {
            let len = lens[rng.below(lens.len() as u64) as usize];
            let (start, count) = fs.alloc_blocks(&mut h, goal, len).unwrap();
            assert!(count >= 1 && count <= len, "count {count} for len {len}");
            assert!(geo.block_in_range(start) && geo.block_in_range(start + count - 1));
            assert_eq!(geo.group_of_block(start), geo.group_of_block(start + count - 1), "run within a group");
            for b in start..start + count {
                assert!(taken.insert(b), "block {b} handed out twice");
                assert!(fs.block_in_use(&h, b).unwrap());
            }
            got.runs.push((start, count));
        }
        h.finish();
        round += 1;
        if round % 2 == 0 {
            fs.sync().unwrap();
        }
    }
    // A discarded handle allocates nothing.
    {
        let mut h = fs.begin().unwrap();
        let (s, _) = fs.alloc_blocks(&mut h, 0, 5).unwrap();
        fs.alloc_inode(&mut h, ROOT_INO, true).unwrap();
        drop(h);
        let h = fs.begin().unwrap();
        assert!(!fs.block_in_use(&h, s).unwrap());
    }

    let mut dirs = vec![ROOT_INO];
    let mut seen = BTreeSet::new();
    let mut h = fs.begin().unwrap();
    for i in 0..40u32 {
        let (parent, is_dir) = match i % 4 {
            0 => (ROOT_INO, true),
            1 => (dirs[rng.below(dirs.len() as u64) as usize], false),
            2 => (dirs[rng.below(dirs.len() as u64) as usize], true),
            _ => match far_parents.get((i / 4) as usize % far_parents.len().max(1)) {
                Some(&p) => (p, i % 8 == 3),
                None => (ROOT_INO, false),
            },
        };
        let ino = fs.alloc_inode(&mut h, parent, is_dir).unwrap();
        assert!(ino >= sb.first_ino() && ino <= sb.inodes_count, "inode {ino}");
        assert!(seen.insert(ino), "inode {ino} handed out twice");
        assert!(fs.inode_in_use(&h, ino).unwrap());
        if is_dir {
            dirs.push(ino);
        }
        got.inodes.push((ino, is_dir));
        if i % 10 == 9 {
            h.finish();
            h = fs.begin().unwrap();
        }
    }
    h.finish();
    fs.sync().unwrap();
    got
}

/// Frees everything in `got`, in pieces, across several transactions.
fn free_all(fs: &Ext4, got: &Allocated) {
    for (i, chunk) in got.runs.chunks(4).enumerate() {
        let mut h = fs.begin().unwrap();
        for &(s, l) in chunk {
            let half = l / 2;
            if half > 0 {
                fs.free_blocks(&mut h, s + half, l - half).unwrap();
                fs.free_blocks(&mut h, s, half).unwrap();
            } else {
                fs.free_blocks(&mut h, s, l).unwrap();
            }
        }
        h.finish();
        if i % 2 == 1 {
            fs.tx().unwrap().commit().unwrap();
        }
    }
    let mut h = fs.begin().unwrap();
    for &(ino, is_dir) in &got.inodes {
        fs.free_inode(&mut h, ino, is_dir).unwrap();
    }
    // Double frees are refused.
    if let Some(&(s, _)) = got.runs.first() {
        assert!(matches!(fs.free_blocks(&mut h, s, 1), Err(Error::Corrupt { .. })));
    }
    if let Some(&(ino, d)) = got.inodes.first() {
        assert!(matches!(fs.free_inode(&mut h, ino, d), Err(Error::Corrupt { .. })));
    }
    h.finish();
    fs.sync().unwrap();
}

fn group_tally(fs: &Ext4, got: &Allocated) -> (BTreeMap<u32, u64>, BTreeMap<u32, u64>, BTreeMap<u32, u64>) {
    let geo = fs.geometry();
    let (mut blocks, mut inodes, mut dirs) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for &(s, l) in &got.runs {
        *blocks.entry(geo.group_of_block(s)).or_insert(0) += l;
    }
    for &(ino, d) in &got.inodes {
        let g = geo.inode_location(ino).0;
        *inodes.entry(g).or_insert(0) += 1;
        if d {
            *dirs.entry(g).or_insert(0) += 1;
        }
    }
    (blocks, inodes, dirs)
}

/// The whole check for one image: allocate, compare with the oracles,
/// free, compare again. Returns how many groups had their block bitmap and
/// their inode bitmap initialised on the way.
fn check_image(tag: &str, size: &str, args: &[&str], goal_groups: &[u32], far_parent_groups: &[u32]) -> (usize, usize) {
    let scratch = Scratch::new(tag);
    let img = scratch.join("img");
    mkfs(&img, size, None, args);
    assert!(fsck(&img).0, "fresh image not clean");
    let before = dumpe2fs(&img);

    let fs = open_rw(&img);
    let geo = fs.geometry().clone();
    let sb0 = *fs.superblock();
    let goals: Vec<u64> = goal_groups.iter().map(|&g| geo.group_first_block(g) + 7).collect();
    let parents: Vec<u32> = far_parent_groups.iter().map(|&g| g * geo.inodes_per_group + 1).collect();
    let got = allocate(&fs, &goals, &parents);
    let view = our_groups(&fs);
    let sb1 = fs.current_superblock().unwrap();
    drop(fs);
    for g in goal_groups {
        assert!(!view[*g as usize].block_uninit, "{tag}: group {g} allocated from keeps BLOCK_UNINIT");
    }

    // dumpe2fs and a fresh open agree with the in-memory view.
    assert_eq!(dumpe2fs(&img), view, "{tag}: dumpe2fs differs from our descriptors");
    assert_eq!(our_groups(&open_ro(&img)), view);

    // e2fsck: exactly our blocks and inodes are marked but unused.
    let (clean, out) = fsck(&img);
    assert!(!clean, "{tag}: allocations unreferenced, e2fsck should complain");
    let rep = parse_fsck(&out);
    assert_eq!(rep.blocks_unused, got.blocks(), "{tag}: block differences\n{out}");
    assert!(rep.blocks_unmarked.is_empty(), "{tag}: blocks in use but unmarked\n{out}");
    let inos: BTreeSet<u64> = got.inodes.iter().map(|&(i, _)| i as u64).collect();
    assert_eq!(rep.inodes_unused, inos, "{tag}: inode differences\n{out}");
    assert!(rep.inodes_unmarked.is_empty(), "{tag}\n{out}");
    let (tb, ti, td) = group_tally(&open_ro(&img), &got);
    let expect = |tally: &BTreeMap<u32, u64>, field: fn(&DumpGroup) -> u64, up: bool| -> BTreeMap<u32, (u64, u64)> {
        tally
            .iter()
            .filter(|&(_, &n)| n > 0)
            .map(|(&g, &n)| {
                let now = field(&view[g as usize]);
                let was = field(&before[g as usize]);
                assert_eq!(
                    if up { now - was } else { was - now },
                    n,
                    "{tag}: group {g} count moved by the wrong amount"
                );
                (g, (now, was))
            })
            .collect()
    };
    // e2fsck counts free blocks and inodes from the bitmaps on disk: the
    // descriptors and the superblock must agree with them exactly, so no
    // count is reported. Directory counts come from the inodes themselves.
    assert!(rep.group_free_blocks.is_empty() && rep.sb_free_blocks.is_none(), "{tag}: block counts\n{out}");
    assert!(rep.group_free_inodes.is_empty() && rep.sb_free_inodes.is_none(), "{tag}: inode counts\n{out}");
    let _ = expect(&tb, |d| d.free_blocks, false);
    let _ = expect(&ti, |d| d.free_inodes, false);
    assert_eq!(rep.group_dirs, expect(&td, |d| d.dirs, true), "{tag}\n{out}");
    let nblocks = got.blocks().len() as u64;
    assert_eq!(sb0.free_blocks_count() - sb1.free_blocks_count(), nblocks);
    assert_eq!(sb0.free_inodes_count - sb1.free_inodes_count, got.inodes.len() as u32);

    // debugfs sees the bits.
    for &(s, l) in got.runs.iter().take(6) {
        let t = debugfs(&img, &format!("testb {s} {l}"));
        assert_eq!(t.matches("marked in use").count() as u64, l, "{tag}: testb {s} {l}: {t}");
    }
    for &(ino, _) in got.inodes.iter().take(6) {
        let t = debugfs(&img, &format!("testi <{ino}>"));
        assert!(t.contains("is marked in use"), "{tag}: testi {ino}: {t}");
    }

    // Free everything: clean again, counts as mke2fs left them.
    let fs = open_rw(&img);
    free_all(&fs, &got);
    drop(fs);
    let (clean, out) = fsck(&img);
    assert!(clean && !out.contains("differences") && !out.contains("wrong"), "{tag}: not clean after freeing\n{out}");
    let after = dumpe2fs(&img);
    for (g, (a, b)) in after.iter().zip(&before).enumerate() {
        assert_eq!(
            (a.free_blocks, a.free_inodes, a.dirs),
            (b.free_blocks, b.free_inodes, b.dirs),
            "{tag}: group {g} counts not restored"
        );
    }
    let inits = |f: fn(&DumpGroup) -> bool| before.iter().zip(&view).filter(|(b, v)| f(b) && !f(v)).count();
    (inits(|d| d.block_uninit), inits(|d| d.inode_uninit))
}

#[test]
fn ext4_4k_metadata_csum_flex_bg() {
    check_image("a4k", "256M", &["-t", "ext4", "-b", "4096"], &[1], &[1]);
}

#[test]
fn ext4_1k_metadata_csum_flex_bg() {
    check_image("a1k", "64M", &["-t", "ext4", "-b", "1024"], &[3, 7], &[5]);
}

#[test]
fn ext4_uninit_bg_crc16_32byte_descriptors() {
    check_image("acrc16", "48M", &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum,^64bit,uninit_bg"], &[2, 5], &[4]);
}

#[test]
fn ext4_meta_bg() {
    check_image("ametabg", "96M", &["-t", "ext4", "-b", "1024", "-O", "meta_bg,^resize_inode"], &[9, 11], &[10]);
}

#[test]
fn ext3_block_maps() {
    check_image("aext3", "32M", &["-t", "ext3", "-b", "1024"], &[2], &[3]);
}

#[test]
fn ext2_no_checksums() {
    check_image("aext2", "24M", &["-t", "ext2", "-b", "1024"], &[1, 2], &[2]);
}

#[test]
fn ext4_uninit_groups_with_flex_bg() {
    // 512 MiB at 4 KiB: group 1 is BLOCK_UNINIT and INODE_UNINIT; groups
    // 2 and 3 INODE_UNINIT; all tables live in group 0, and all inodes
    // come from there (one flex group).
    let (blocks, _) = check_image("auninit", "512M", &["-t", "ext4", "-b", "4096"], &[1, 3], &[2]);
    assert!(blocks >= 1, "BLOCK_UNINIT group initialised");
    // Flex groups of 2 over 8 groups: top-level directories spread into
    // other flex groups, whose inode bitmaps get initialised.
    let (blocks, inodes) = check_image("auninit-flex2", "1G", &["-t", "ext4", "-b", "4096", "-G", "2"], &[3, 5], &[6]);
    assert!(blocks >= 1 && inodes >= 1, "uninit groups initialised: {blocks} block, {inodes} inode");
}

#[test]
fn ext4_uninit_groups_without_flex_bg() {
    // Each group keeps its own tables; files under a parent in group 2 take
    // their inodes from that INODE_UNINIT group.
    let (blocks, inodes) =
        check_image("auninit-noflex", "512M", &["-t", "ext4", "-b", "4096", "-O", "^flex_bg"], &[1, 3], &[2, 1]);
    assert!(blocks >= 1 && inodes >= 2, "uninit groups initialised: {blocks} block, {inodes} inode");
}
