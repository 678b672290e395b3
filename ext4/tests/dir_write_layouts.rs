//! Directory layouts changing under mutation, step by step: an inline
//! directory filling `i_block`, growing into `system.data`, becoming a
//! block and then an index, with readdir cookies carried across (and other
//! in-inode attributes kept); directories moving between parents (".."
//! re-pointed with `set_entry`) and being removed when empty, in every
//! layout; a hole in a linear directory filled; a full file system
//! refusing growth without leaving anything behind. Each stage is judged
//! by `e2fsck -fn`, `debugfs` and, where possible, the kernel.

mod common;
mod dir_write_support;

use common::Scratch;
use common::tools::{debugfs, fsck, mkfs};
use dir_write_support::*;
use ext4::disk::dir_entry::{FT_DIR, FT_REG_FILE};
use ext4::disk::inode::{FL_INDEX, FL_INLINE_DATA};
use ext4::{Ext4, OpenOptions, ROOT_INO};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// How a directory stores its entries right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Inline, entries in `i_block` only.
    IBlock,
    /// Inline, `system.data` holding entries too.
    Xattr,
    /// One or more blocks, not indexed.
    Linear,
    /// Indexed.
    Htree,
}

fn stage(fs: &Ext4, ino: u32) -> Stage {
    let inode = fs.read_inode(ino).unwrap();
    if inode.has_flag(FL_INLINE_DATA) {
        if inode.size() > 60 { Stage::Xattr } else { Stage::IBlock }
    } else if inode.has_flag(FL_INDEX) {
        Stage::Htree
    } else {
        Stage::Linear
    }
}

fn assert_clean(img: &Path, what: &str) {
    let (clean, out) = fsck(img);
    assert!(clean, "{what}: e2fsck -fn is not clean:\n{out}");
}

/// Every entry listed before a change and still present afterwards is
/// returned exactly once by a listing cut at `cut` and resumed after it.
fn check_resume(fs: &Ext4, dir: u32, before: &[(Vec<u8>, u32, u64)], cut: usize, model: &BTreeMap<Vec<u8>, u32>) {
    let rest = listing(fs, dir, before[cut - 1].2);
    let mut seen = BTreeSet::new();
    let old: BTreeSet<&Vec<u8>> = before.iter().map(|e| &e.0).collect();
    for (name, _, _) in before[..cut].iter().chain(rest.iter()) {
        if old.contains(name) && model.contains_key(name) {
            assert!(seen.insert(name.clone()), "{name:x?} returned twice across the resumption");
        }
    }
    assert_eq!(seen.len(), old.iter().filter(|n| model.contains_key(**n)).count(), "an entry was skipped");
}

#[test]
fn inline_dir_grows_into_xattr_then_block_then_index() {
    let scratch = Scratch::new("dw-inline-stages");
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", None, &["-t", "ext4", "-O", "inline_data", "-I", "256"]);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let mut h = fs.begin().unwrap();
    let dir = mkdir_in(&fs, &mut h, ROOT_INO, b"i");
    h.finish();
    assert_eq!(stage(&fs, dir), Stage::IBlock);
    let mut model = BTreeMap::new();
    let mut seen_stages = BTreeSet::new();
    let mut rng = Rng(77);
    let mut serial = 0u64;
    while stage(&fs, dir) != Stage::Htree {
        let before = listing(&fs, dir, 0);
        let was = stage(&fs, dir);
        let mut h = fs.begin().unwrap();
        let mut inode = fs.read_inode_in(&h, dir).unwrap();
        serial += 1;
        let name = format!("e{serial:03}-{}", rng.below(1000)).into_bytes();
        let ino = new_file(&fs, &mut h, dir);
        fs.add_entry(&mut h, &mut inode, &name, ino, FT_REG_FILE).unwrap();
        h.finish();
        model.insert(name, ino);
        let now = stage(&fs, dir);
        let got: BTreeMap<_, _> = listing(&fs, dir, 0).into_iter().map(|(n, i, _)| (n, i)).collect();
        assert!(got == model, "listing after {serial} adds ({now:?})");
        if before.len() >= 2 && now != Stage::Htree {
            for cut in 1..before.len() {
                check_resume(&fs, dir, &before, cut, &model);
            }
        }
        if now != was || seen_stages.is_empty() {
            // Each new layout, and the inline ones also after removals and
            // a re-pointed entry in each region.
            if now <= Stage::Xattr && now != was {
                let mut h = fs.begin().unwrap();
                let mut inode = fs.read_inode_in(&h, dir).unwrap();
                let first = model.keys().next().unwrap().clone();
                let last = model.keys().last().unwrap().clone();
                for name in [&first, &last] {
                    let fresh = new_file(&fs, &mut h, dir);
                    let old = fs.set_entry(&mut h, &mut inode, name, fresh, FT_REG_FILE).unwrap();
                    delete_file(&fs, &mut h, old);
                    model.insert(name.clone(), fresh);
                }
                let gone = fs.remove_entry(&mut h, &mut inode, &first).unwrap();
                delete_file(&fs, &mut h, gone);
                model.remove(&first);
                h.finish();
            }
            fs.close().unwrap();
            assert_clean(&img, &format!("inline stage {now:?}"));
            assert!(debugfs_listing(&img, "/i") == model, "debugfs at {now:?}");
            if let Some(m) = mount_ro(&img, &scratch, &format!("dir_write inline stage {now:?} kernel listing")) {
                assert!(kernel_listing(&m, "/i") == model, "the kernel lists other names at {now:?}");
            }
            seen_stages.insert(now);
        }
        assert!(serial < 1000, "never became indexed");
    }
    assert_eq!(seen_stages.into_iter().collect::<Vec<_>>(), [Stage::IBlock, Stage::Xattr, Stage::Linear, Stage::Htree]);
    let stat = debugfs(&img, "htree_dump /i");
    assert!(stat.contains("Root node dump"), "{stat}");
    drop(fs);
    if let Some(m) = mount_ro(&img, &scratch, "dir_write inline stages kernel listing") {
        assert!(kernel_listing(&m, "/i") == model, "the kernel lists other names");
    }
}

/// The layouts a moved directory can have.
const KINDS: [(&str, usize); 3] = [("c-small", 2), ("c-linear", 60), ("c-htree", 400)];

/// mkdir /p1 and /p2, directories of each kind in /p1 and an empty one;
/// moves the kinds to /p2 (".." re-pointed), removes the empty one.
fn move_dirs(mkfs_args: &[&str], tag: &str) {
    let scratch = Scratch::new(tag);
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", None, mkfs_args);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let mut h = fs.begin().unwrap();
    let p1 = mkdir_in(&fs, &mut h, ROOT_INO, b"p1");
    let p2 = mkdir_in(&fs, &mut h, ROOT_INO, b"p2");
    let empty = mkdir_in(&fs, &mut h, p1, b"empty");
    h.finish();
    let mut children = Vec::new();
    for (name, entries) in KINDS {
        let mut h = fs.begin().unwrap();
        let c = mkdir_in(&fs, &mut h, p1, name.as_bytes());
        h.finish();
        for chunk in (0..entries).collect::<Vec<_>>().chunks(16) {
            let mut h = fs.begin().unwrap();
            let mut inode = fs.read_inode_in(&h, c).unwrap();
            for i in chunk {
                let ino = new_file(&fs, &mut h, c);
                fs.add_entry(&mut h, &mut inode, format!("file-{i:04}").as_bytes(), ino, FT_REG_FILE).unwrap();
            }
            h.finish();
        }
        children.push((name, c));
    }
    assert!(fs.read_inode(children[2].1).unwrap().has_flag(FL_INDEX), "{tag}: the big child is indexed");
    // Emptiness as the handle sees it, in every layout.
    let h = fs.begin().unwrap();
    assert!(fs.dir_is_empty_in(&h, &fs.read_inode_in(&h, empty).unwrap()).unwrap());
    assert!(!fs.dir_is_empty_in(&h, &fs.read_inode_in(&h, p1).unwrap()).unwrap());
    for &(_, c) in &children {
        assert!(!fs.dir_is_empty_in(&h, &fs.read_inode_in(&h, c).unwrap()).unwrap());
    }
    drop(h);
    // rename /p1/NAME /p2/NAME, all three in one handle.
    let mut h = fs.begin().unwrap();
    let mut d1 = fs.read_inode_in(&h, p1).unwrap();
    let mut d2 = fs.read_inode_in(&h, p2).unwrap();
    for &(name, c) in &children {
        assert_eq!(fs.remove_entry(&mut h, &mut d1, name.as_bytes()).unwrap(), c);
        fs.add_entry(&mut h, &mut d2, name.as_bytes(), c, FT_DIR).unwrap();
        let mut child = fs.read_inode_in(&h, c).unwrap();
        assert_eq!(fs.set_entry(&mut h, &mut child, b"..", p2, FT_DIR).unwrap(), p1);
        assert_eq!(fs.find_entry_in(&h, &child, b"..").unwrap().unwrap().ino, p2);
        d1.raw.links_count -= 1;
        d2.raw.links_count += 1;
    }
    fs.write_inode(&mut h, &mut d1).unwrap();
    fs.write_inode(&mut h, &mut d2).unwrap();
    h.finish();
    // rmdir /p1/empty.
    let mut h = fs.begin().unwrap();
    let mut d1 = fs.read_inode_in(&h, p1).unwrap();
    assert_eq!(fs.remove_entry(&mut h, &mut d1, b"empty").unwrap(), empty);
    d1.raw.links_count -= 1;
    fs.write_inode(&mut h, &mut d1).unwrap();
    let mut e = fs.read_inode_in(&h, empty).unwrap();
    fs.unmap_blocks_in(&mut h, &mut e, 0, u64::MAX).unwrap();
    e.raw.links_count = 0;
    e.raw.dtime = 1_700_000_002;
    fs.write_inode(&mut h, &mut e).unwrap();
    fs.free_inode(&mut h, empty, true).unwrap();
    assert!(fs.dir_is_empty_in(&h, &d1).unwrap());
    h.finish();
    fs.close().unwrap();
    for &(name, c) in &children {
        let inode = fs.read_inode(c).unwrap();
        assert_eq!(fs.lookup(&inode, b"..").unwrap().unwrap().ino, p2, "{tag} {name}");
        let p2i = fs.read_inode(p2).unwrap();
        assert_eq!(fs.lookup(&p2i, name.as_bytes()).unwrap().unwrap().ino, c);
    }
    assert!(listing(&fs, p1, 0).is_empty());
    drop(fs);
    assert_clean(&img, tag);
    let names: BTreeSet<Vec<u8>> = debugfs_listing(&img, "/p2").into_keys().collect();
    assert_eq!(names, KINDS.iter().map(|k| k.0.as_bytes().to_vec()).collect::<BTreeSet<_>>());
    if let Some(m) = mount_ro(&img, &scratch, &format!("dir_write {tag} kernel")) {
        let p2_ino = std::fs::metadata(m.0.join("p2")).unwrap().ino();
        for (name, _) in KINDS {
            let dotdot = std::fs::metadata(m.0.join("p2").join(name).join("..")).unwrap().ino();
            assert_eq!(dotdot, p2_ino, "{tag}: the kernel's {name}/..");
        }
        assert!(kernel_listing(&m, "/p1").is_empty());
    }
}

#[test]
fn moves_ext4_inline() {
    move_dirs(&["-t", "ext4", "-O", "inline_data"], "dw-move-inline");
}

#[test]
fn moves_ext4_1k() {
    move_dirs(&["-t", "ext4", "-b", "1024"], "dw-move-1k");
}

#[test]
fn moves_ext3() {
    move_dirs(&["-t", "ext3"], "dw-move-ext3");
}

/// An inline directory that carries another in-inode attribute keeps it
/// through the growth of `system.data` and the conversion to a block.
#[test]
fn inline_dir_keeps_other_attributes() {
    let scratch = Scratch::new("dw-inline-xattr");
    let src = scratch.join("src");
    std::fs::create_dir_all(src.join("x")).unwrap();
    std::fs::write(src.join("x/f"), b"").unwrap();
    common::tree::set_xattr(&src.join("x"), "user.keep", b"kept value");
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", Some(&src), &["-t", "ext4", "-O", "inline_data", "-I", "256"]);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let x = fs.resolve_path(b"/x", false).unwrap();
    assert_eq!(stage(&fs, x), Stage::IBlock);
    let mut model: BTreeMap<Vec<u8>, u32> = listing(&fs, x, 0).into_iter().map(|(n, i, _)| (n, i)).collect();
    let mut stages = BTreeSet::new();
    for i in 0..40 {
        let mut h = fs.begin().unwrap();
        let mut inode = fs.read_inode_in(&h, x).unwrap();
        let ino = new_file(&fs, &mut h, x);
        let name = format!("n{i}").into_bytes();
        fs.add_entry(&mut h, &mut inode, &name, ino, FT_REG_FILE).unwrap();
        h.finish();
        model.insert(name, ino);
        let now = stage(&fs, x);
        if stages.insert(now) {
            fs.close().unwrap();
            assert_clean(&img, &format!("inline with xattr at {now:?}"));
        }
        let inode = fs.read_inode(x).unwrap();
        assert_eq!(fs.get_xattr(&inode, b"user.keep").unwrap(), b"kept value", "at {now:?}");
    }
    assert!(stages.contains(&Stage::Xattr) && stages.contains(&Stage::Linear), "{stages:?}");
    fs.close().unwrap();
    drop(fs);
    assert_clean(&img, "inline with xattr at the end");
    assert!(debugfs_listing(&img, "/x") == model);
}

/// A hole in a linear directory (never made by the kernel, tolerated by
/// readers) is filled by the next entry that finds no room before it.
#[test]
fn linear_dir_hole_is_filled() {
    let scratch = Scratch::new("dw-hole");
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", None, &["-t", "ext2", "-b", "1024", "-O", "^dir_index"]);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let mut h = fs.begin().unwrap();
    let dir = mkdir_in(&fs, &mut h, ROOT_INO, b"h");
    h.finish();
    // 20-byte names: 28-byte records, 35 per block with 16..20 bytes of
    // slack, never enough for another one.
    let name = |i: usize| format!("entry-{i:014}").into_bytes();
    let mut model = BTreeMap::new();
    let mut h = fs.begin().unwrap();
    let mut inode = fs.read_inode_in(&h, dir).unwrap();
    for i in 0..100 {
        let ino = new_file(&fs, &mut h, dir);
        fs.add_entry(&mut h, &mut inode, &name(i), ino, FT_REG_FILE).unwrap();
        model.insert(name(i), ino);
    }
    h.finish();
    assert_eq!(fs.read_inode(dir).unwrap().size(), 3 * 1024);
    // Empty block 1 (entries 35..71), then unmap it.
    let mut h = fs.begin().unwrap();
    let mut inode = fs.read_inode_in(&h, dir).unwrap();
    for i in 35..71 {
        let ino = fs.remove_entry(&mut h, &mut inode, &name(i)).unwrap();
        delete_file(&fs, &mut h, ino);
        model.remove(&name(i));
    }
    fs.unmap_blocks_in(&mut h, &mut inode, 1, 1).unwrap();
    h.finish();
    let got: BTreeMap<_, _> = listing(&fs, dir, 0).into_iter().map(|(n, i, _)| (n, i)).collect();
    assert!(got == model);
    let mut h = fs.begin().unwrap();
    let mut inode = fs.read_inode_in(&h, dir).unwrap();
    let ino = new_file(&fs, &mut h, dir);
    fs.add_entry(&mut h, &mut inode, &name(1000), ino, FT_REG_FILE).unwrap();
    model.insert(name(1000), ino);
    h.finish();
    let inode = fs.read_inode(dir).unwrap();
    assert_eq!(inode.size(), 3 * 1024, "the hole was filled, not appended");
    assert!(matches!(fs.map_block(&inode, 1).unwrap(), ext4::Mapping::Mapped { .. }));
    fs.close().unwrap();
    drop(fs);
    assert_clean(&img, "hole filled");
    assert!(debugfs_listing(&img, "/h") == model);
}

/// On a full file system a directory that must grow fails with NoSpace;
/// the dropped handle leaves everything as it was.
#[test]
fn full_file_system_refuses_growth() {
    let scratch = Scratch::new("dw-full");
    let img = scratch.join("fs.img");
    let args = ["-t", "ext4", "-b", "1024", "-O", "^has_journal", "-N", "4096"];
    mkfs(&img, "8M", None, &args);
    let (free, reserve) = {
        let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
        (fs.superblock().free_blocks_count(), fs.split_reserve())
    };
    // A file taking all but a few blocks (and its extent blocks) beyond the
    // split reserve, which ordinary allocations never take.
    let src = scratch.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("fill"), vec![1u8; ((free - 12 - reserve) * 1024) as usize]).unwrap();
    mkfs(&img, "8M", Some(&src), &args);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let mut h = fs.begin().unwrap();
    let dir = mkdir_in(&fs, &mut h, ROOT_INO, b"d");
    h.finish();
    let mut model = BTreeMap::new();
    let mut refused = false;
    for i in 0..2000 {
        let mut h = fs.begin().unwrap();
        let mut inode = fs.read_inode_in(&h, dir).unwrap();
        let ino = new_file(&fs, &mut h, dir);
        let name = format!("{i:05}-{}", "n".repeat(100)).into_bytes();
        match fs.add_entry(&mut h, &mut inode, &name, ino, FT_REG_FILE) {
            Ok(()) => {
                h.finish();
                model.insert(name, ino);
            }
            Err(ext4::Error::NoSpace) => {
                drop(h);
                refused = true;
                break;
            }
            Err(e) => panic!("add {i}: {e}"),
        }
    }
    assert!(refused, "the directory never ran out of space");
    let got: BTreeMap<_, _> = listing(&fs, dir, 0).into_iter().map(|(n, i, _)| (n, i)).collect();
    assert!(got == model);
    fs.close().unwrap();
    drop(fs);
    assert_clean(&img, "after a refused growth");
    assert!(debugfs_listing(&img, "/d") == model);
}
