//! Directories read back from images packed by `mke2fs -d` (and indexed by
//! `e2fsck -fyD`): listings equal the source and `debugfs ls -p`, every
//! name looks up to its inode, absent names are absent, and every readdir
//! cookie resumes exactly after its entry. Linear, htree (one and two
//! levels, every hash algorithm, signed and unsigned), inline, with and
//! without metadata_csum and the filetype feature.

mod common;

use common::Scratch;
use common::tools::{assert_fsck_clean, debugfs, mkfs, run};
use ext4::disk::dir_entry::file_type_code;
use ext4::disk::inode::{FL_INDEX, FL_INLINE_DATA};
use ext4::{DirEntry, Ext4, Inode, OpenOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

/// Creates `count` empty files named by `name(i)` in `dir`.
fn files(dir: &Path, count: usize, name: impl Fn(usize) -> Vec<u8>) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        let n = name(i);
        std::fs::write(dir.join(std::ffi::OsStr::from_bytes(&n)), b"").unwrap();
    }
}

/// The source tree shared by the image tests.
fn source_tree(src: &Path) {
    std::fs::create_dir_all(src.join("empty")).unwrap();
    files(&src.join("ten"), 10, |i| format!("file-{i}").into_bytes());
    std::fs::create_dir_all(src.join("ten/subdir")).unwrap();
    std::os::unix::fs::symlink("file-1", src.join("ten/link")).unwrap();
    files(&src.join("big"), 5000, |i| format!("a-fairly-long-file-name-for-the-big-directory-{i:05}").into_bytes());
    // High bytes: UTF-8, raw 0xff/0xfe, every byte >= 0x80; and a 255-byte name.
    files(&src.join("high"), 400, |i| {
        let mut n = format!("grün-€-{i:03}-").into_bytes();
        n.extend_from_slice(&[0xff, 0xfe, 0x80 + (i % 128) as u8, b'x']);
        n
    });
    std::fs::write(src.join("high").join(std::ffi::OsStr::from_bytes(&[b'z'; 255])), b"").unwrap();
    std::fs::write(src.join("high").join(std::ffi::OsStr::from_bytes(&[0xff])), b"").unwrap();
    // Small enough to stay inline with inline_data.
    files(&src.join("tiny"), 3, |i| format!("t{i}").into_bytes());
}

fn open(img: &Path) -> Ext4 {
    Ext4::open(img, &OpenOptions { read_only: true, ..Default::default() }).unwrap()
}

/// Re-indexes every directory with `e2fsck -fyD` (mke2fs -d writes linear
/// directories). Exit status 1 means "file system modified".
fn index_dirs(img: &Path) {
    let st = Command::new("e2fsck").arg("-fyD").arg(img).output().unwrap().status;
    assert!(matches!(st.code(), Some(0 | 1)), "e2fsck -fyD {img:?}: {st}");
}

/// The whole listing with each entry's resume cookie.
fn listing(fs: &Ext4, dir: &Inode, from: u64, max: usize) -> Vec<(DirEntry, u64)> {
    let mut out = Vec::new();
    fs.read_dir(dir, from, &mut |e, c| {
        out.push((e.clone(), c));
        out.len() < max
    })
    .unwrap();
    out
}

/// `debugfs ls -p`: name -> inode.
fn debugfs_ls(img: &Path, path: &str) -> BTreeMap<Vec<u8>, u32> {
    let out = Command::new("debugfs").arg("-R").arg(format!("ls -p {path}")).arg(img).output().unwrap();
    let mut m = BTreeMap::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| l.starts_with(b"/")) {
        // /INO/MODE/UID/GID/NAME/SIZE/
        let f: Vec<&[u8]> = line.split(|&b| b == b'/').collect();
        let ino: u32 = std::str::from_utf8(f[1]).unwrap().parse().unwrap();
        if ino != 0 {
            m.insert(f[5].to_vec(), ino);
        }
    }
    m
}

/// Checks resuming at every cookie of `full`: the rest follows exactly.
fn check_cookies(fs: &Ext4, dir: &Inode, full: &[(DirEntry, u64)], ctx: &str) {
    let mut seen = BTreeSet::new();
    for (_, c) in full {
        assert!(*c != 0 && *c <= i64::MAX as u64, "{ctx}: cookie {c:#x}");
        seen.insert(*c);
    }
    assert_eq!(seen.len(), full.len(), "{ctx}: cookies are distinct");
    let exhaustive = full.len() <= 600;
    for (i, (_, c)) in full.iter().enumerate() {
        let (max, check_all) = if exhaustive || i % 97 == 0 { (usize::MAX, true) } else { (3, false) };
        let rest = listing(fs, dir, *c, max);
        let want = &full[i + 1..];
        if check_all {
            assert_eq!(rest, want, "{ctx}: resuming after entry {i}");
        } else {
            assert_eq!(rest, &want[..want.len().min(3)], "{ctx}: resuming after entry {i}");
        }
    }
    // Paged like FUSE: each call takes a few entries and resumes at the last cookie.
    for page in [1, 7, 100] {
        let (mut got, mut at) = (Vec::new(), 0);
        loop {
            let part = listing(fs, dir, at, page);
            let Some(last) = part.last() else { break };
            at = last.1;
            got.extend(part);
        }
        assert_eq!(got, full, "{ctx}: paged by {page}");
    }
}

/// Checks one directory of the image against the source and debugfs.
fn check_dir(fs: &Ext4, img: &Path, src: &Path, path: &str) -> Inode {
    let ctx = format!("{img:?}:{path}");
    let ino = fs.resolve_path(path.as_bytes(), false).unwrap();
    let dir = fs.read_inode(ino).unwrap();
    let full = listing(fs, &dir, 0, usize::MAX);
    let names: Vec<&[u8]> = full.iter().map(|(e, _)| e.name.as_slice()).collect();
    let unique: BTreeSet<&[u8]> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "{ctx}: no name twice");
    let mut want: BTreeSet<Vec<u8>> = std::fs::read_dir(src.join(path.trim_start_matches('/')))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    want.extend([b".".to_vec(), b"..".to_vec()]);
    if path == "/" {
        want.insert(b"lost+found".to_vec());
    }
    let got: BTreeSet<Vec<u8>> = unique.iter().map(|n| n.to_vec()).collect();
    assert_eq!(got, want, "{ctx}: listing");

    let oracle = debugfs_ls(img, path);
    let filetype = fs.superblock().feature_incompat & 0x2 != 0;
    for (e, _) in &full {
        assert_eq!(oracle.get(&e.name), Some(&e.ino), "{ctx}: {:?} per debugfs", e.name);
        let found = fs.lookup(&dir, &e.name).unwrap().unwrap_or_else(|| panic!("{ctx}: lookup {:?}", e.name));
        assert_eq!(&found, e, "{ctx}: lookup {:?}", e.name);
        let ft = fs.read_inode(e.ino).unwrap().file_type().map(file_type_code).unwrap();
        assert_eq!(e.file_type, if filetype { ft } else { 0 }, "{ctx}: {:?}", e.name);
        let mut absent = e.name.clone();
        absent.push(b'~');
        if absent.len() <= 255 {
            assert_eq!(fs.lookup(&dir, &absent).unwrap(), None, "{ctx}: {absent:?} is absent");
        }
    }
    for absent in [&b"no-such-name"[..], b"a-fairly-long-file-name-for-the-big-directory-99999", &[0xfe]] {
        assert_eq!(fs.lookup(&dir, absent).unwrap(), None, "{ctx}");
    }
    let parent = fs.resolve_path(Path::new(path).parent().unwrap_or(Path::new("/")).as_os_str().as_bytes(), false);
    assert_eq!(fs.lookup(&dir, b"..").unwrap().unwrap().ino, parent.unwrap(), "{ctx}: ..");
    assert_eq!(fs.lookup(&dir, b".").unwrap().unwrap().ino, ino, "{ctx}: .");
    check_cookies(fs, &dir, &full, &ctx);
    dir
}

const DIRS: [&str; 7] = ["/", "/empty", "/ten", "/ten/subdir", "/big", "/high", "/tiny"];

/// How to build a test image.
#[derive(Default)]
struct Case<'a> {
    /// Extra mke2fs arguments.
    mkfs: &'a [&'a str],
    /// `tune2fs -E hash_alg=` before indexing (mke2fs takes it only from its profile).
    hash_alg: Option<&'a str>,
    /// Index the directories with `e2fsck -fyD`.
    reindex: bool,
    /// Flag the superblock for unsigned-char hashes before indexing.
    unsigned: bool,
}

/// Builds an image from the shared tree and checks every directory.
/// Returns the directories that are hash-indexed and inline.
fn run_case(tag: &str, case: Case<'_>) -> (BTreeSet<String>, BTreeSet<String>) {
    let dir = Scratch::new(tag);
    let src = dir.join("src");
    source_tree(&src);
    let img = dir.join("fs.img");
    let mut args = vec!["-t", "ext4", "-N", "8000"];
    args.extend_from_slice(case.mkfs);
    mkfs(&img, "64M", Some(&src), &args);
    if let Some(alg) = case.hash_alg {
        run(Command::new("tune2fs").arg("-E").arg(format!("hash_alg={alg}")).arg(&img));
    }
    if case.unsigned {
        debugfs_w(&img, "ssv flags 2");
    }
    if case.reindex {
        index_dirs(&img);
    }
    assert_fsck_clean(&img);
    let fs = open(&img);
    assert_eq!(fs.superblock().hash_unsigned(), case.unsigned);
    let want_version = match case.hash_alg {
        Some("legacy") => 0,
        Some("tea") => 2,
        _ => 1,
    };
    let (mut indexed, mut inline) = (BTreeSet::new(), BTreeSet::new());
    for path in DIRS {
        let inode = check_dir(&fs, &img, &src, path);
        if inode.has_flag(FL_INDEX) {
            indexed.insert(path.to_string());
            let dump = debugfs(&img, &format!("htree_dump {path}"));
            assert!(dump.contains(&format!("Hash Version: {want_version}\n")), "{path}: {}", &dump[..200]);
        }
        if inode.has_flag(FL_INLINE_DATA) {
            inline.insert(path.to_string());
        }
    }
    (indexed, inline)
}

fn debugfs_w(img: &Path, request: &str) {
    run(Command::new("debugfs").arg("-w").arg("-R").arg(request).arg(img));
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn linear_dirs_4k_csum() {
    let (indexed, inline) = run_case("dir-linear-4k", Case { mkfs: &["-b", "4096"], ..Default::default() });
    assert!(indexed.is_empty() && inline.is_empty());
}

#[test]
fn linear_dirs_1k_no_filetype_no_csum() {
    run_case(
        "dir-linear-1k-noft",
        Case { mkfs: &["-b", "1024", "-O", "^filetype,^metadata_csum"], ..Default::default() },
    );
}

fn htree_case(tag: &str, case: Case<'_>) {
    let (indexed, _) = run_case(tag, Case { reindex: true, ..case });
    assert!(indexed.is_superset(&set(&["/big", "/high"])), "{indexed:?}");
}

#[test]
fn htree_4k_csum() {
    htree_case("dir-htree-4k", Case { mkfs: &["-b", "4096"], ..Default::default() });
}

#[test]
fn htree_1k_csum() {
    htree_case("dir-htree-1k", Case { mkfs: &["-b", "1024"], ..Default::default() });
}

#[test]
fn htree_4k_no_csum() {
    htree_case("dir-htree-4k-nocsum", Case { mkfs: &["-b", "4096", "-O", "^metadata_csum"], ..Default::default() });
}

#[test]
fn htree_tea_1k() {
    htree_case("dir-htree-tea", Case { mkfs: &["-b", "1024"], hash_alg: Some("tea"), ..Default::default() });
}

#[test]
fn htree_legacy_4k_no_csum() {
    let mkfs = &["-b", "4096", "-O", "^metadata_csum"];
    htree_case("dir-htree-legacy", Case { mkfs, hash_alg: Some("legacy"), ..Default::default() });
}

#[test]
fn htree_unsigned_half_md4_1k() {
    htree_case("dir-htree-unsigned", Case { mkfs: &["-b", "1024"], unsigned: true, ..Default::default() });
}

#[test]
fn htree_unsigned_tea_4k() {
    let case = Case { mkfs: &["-b", "4096"], hash_alg: Some("tea"), unsigned: true, ..Default::default() };
    htree_case("dir-htree-unsigned-tea", case);
}

#[test]
fn htree_unsigned_legacy_1k_no_filetype() {
    let mkfs = &["-b", "1024", "-O", "^filetype"];
    htree_case(
        "dir-htree-unsigned-legacy",
        Case { mkfs, hash_alg: Some("legacy"), unsigned: true, ..Default::default() },
    );
}

#[test]
fn inline_dirs_1k() {
    let mkfs = &["-b", "1024", "-O", "inline_data"];
    let (_, inline) = run_case("dir-inline-1k", Case { mkfs, ..Default::default() });
    assert!(inline.is_superset(&set(&["/empty", "/tiny"])), "{inline:?}");
}

#[test]
fn inline_dirs_4k_reindexed() {
    let mkfs = &["-b", "4096", "-O", "inline_data"];
    let (indexed, inline) = run_case("dir-inline-4k", Case { mkfs, reindex: true, ..Default::default() });
    assert!(inline.is_superset(&set(&["/empty", "/tiny"])), "{inline:?}");
    assert!(indexed.is_superset(&set(&["/big"])), "{indexed:?}");
}

/// libext2fs never grows an inline directory into its system.data xattr
/// (it moves it to a block), so the test moves two of three entries there
/// by hand, as the kernel lays them out, and lets e2fsck judge the result.
#[test]
fn inline_dir_spilling_into_xattr() {
    let dir = Scratch::new("dir-inline-spill");
    let src = dir.join("src");
    files(&src.join("spill"), 3, |i| format!("s{i}").into_bytes());
    let img = dir.join("fs.img");
    mkfs(&img, "8M", Some(&src), &["-t", "ext4", "-b", "1024", "-O", "inline_data"]);
    let ls = debugfs_ls(&img, "/spill");
    // i_block: parent, s0 (12 bytes), s1 (12), s2 (to byte 60). Make s0
    // span i_block, and put s1 and s2 in the xattr value.
    let mut value = Vec::new();
    for name in [b"s1", b"s2"] {
        value.extend_from_slice(&ls[&name[..]].to_le_bytes());
        value.extend_from_slice(&[12, 0, 2, 1]);
        value.extend_from_slice(name);
        value.extend_from_slice(&[0, 0]);
    }
    std::fs::write(dir.join("value"), &value).unwrap();
    let s0_header_word = 56 | 2 << 16 | 1 << 24;
    let cmds = format!(
        "sif /spill block[2] {s0_header_word:#x}\nea_set -f {} /spill system.data\nsif /spill size {}\n",
        dir.join("value").display(),
        60 + value.len()
    );
    std::fs::write(dir.join("cmds"), cmds).unwrap();
    run(Command::new("debugfs").arg("-w").arg("-f").arg(dir.join("cmds")).arg(&img));
    assert_fsck_clean(&img);
    assert_eq!(debugfs_ls(&img, "/spill"), ls);
    let fs = open(&img);
    let inode = check_dir(&fs, &img, &src, "/spill");
    assert!(inode.has_flag(FL_INLINE_DATA));
    assert_eq!(inode.size(), 84);
    // Positions continue across the two regions as after conversion to a
    // block: s0 at 24, s1 at 80, s2 at 92.
    let cookies: Vec<u64> = listing(&fs, &inode, 0, usize::MAX).iter().map(|(_, c)| *c).collect();
    assert_eq!(cookies, [12, 24, 80, 92, 104]);
}

/// 20000 names of 60 bytes at 1 KiB blocks need a two-level index.
#[test]
fn htree_two_levels_1k() {
    let dir = Scratch::new("dir-htree-2level");
    let src = dir.join("src");
    files(&src.join("huge"), 20000, |i| {
        format!("a-name-long-enough-to-fill-blocks-quickly-in-a-huge-dir-{i:05}").into_bytes()
    });
    let img = dir.join("fs.img");
    mkfs(&img, "64M", Some(&src), &["-t", "ext4", "-b", "1024", "-N", "21000"]);
    index_dirs(&img);
    assert_fsck_clean(&img);
    let dump = debugfs(&img, "htree_dump /huge");
    assert!(dump.contains("Indirect levels: 1"), "{}", &dump[..dump.len().min(400)]);
    let fs = open(&img);
    check_dir(&fs, &img, &src, "/huge");
}

/// Casefolded names hash after Unicode folding, which this reader does not
/// implement: lookups there are refused, listing walks the blocks linearly.
#[test]
fn casefolded_dir_lists_but_refuses_lookup() {
    let dir = Scratch::new("dir-casefold");
    let src = dir.join("src");
    files(&src.join("big"), 300, |i| format!("lower-case-name-number-{i}").into_bytes());
    let img = dir.join("fs.img");
    mkfs(&img, "16M", Some(&src), &["-t", "ext4", "-b", "1024", "-O", "casefold"]);
    index_dirs(&img);
    debugfs_w(&img, &format!("sif /big flags {:#x}", 0x4000_0000 | 0x8_0000 | FL_INDEX));
    assert_fsck_clean(&img);
    let fs = open(&img);
    let resolved = fs.resolve_path(b"/big/lower-case-name-number-7", false);
    assert!(matches!(resolved, Err(ext4::Error::Unsupported(_))), "{resolved:?}");
    let root = fs.read_inode(2).unwrap();
    let inode = fs.read_inode(fs.lookup(&root, b"big").unwrap().unwrap().ino).unwrap();
    assert!(inode.has_flag(FL_INDEX));
    assert!(matches!(fs.lookup(&inode, b"lower-case-name-number-7"), Err(ext4::Error::Unsupported(_))));
    assert_eq!(fs.lookup(&inode, b"..").unwrap().unwrap().ino, 2);
    let full = listing(&fs, &inode, 0, usize::MAX);
    let got: BTreeSet<Vec<u8>> = full.iter().map(|(e, _)| e.name.clone()).collect();
    let mut want: BTreeSet<Vec<u8>> = (0..300).map(|i| format!("lower-case-name-number-{i}").into_bytes()).collect();
    want.extend([b".".to_vec(), b"..".to_vec()]);
    assert_eq!(got, want);
    assert_eq!(full.len(), 302);
    check_cookies(&fs, &inode, &full, "casefold");
}
