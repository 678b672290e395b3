//! Everyday tools on our host mount (`ext4-virtiofsd mount`) of fresh ext4
//! images, judged against the same tools on the host's own file system:
//!
//! - tar: a generated tree (empty, inline-sized, multi-block and sparse files,
//!   symlinks, hard links, FIFOs, devices, nested and large directories, odd
//!   names, setuid and sticky modes, owners, mtimes) extracted onto the mount
//!   and packed again reads back equal to its source: every file's sha256,
//!   the file list, modes, owners, sizes, mtimes, link targets, hard-link groups;
//!   the sparse file keeps its holes;
//! - cp -a: user and trusted xattrs and POSIX ACLs (default ACLs on
//!   directories, inherited by files created afterwards) copy equal, judged
//!   by `getfattr -d -m - -R` and `getfacl -R` against the source;
//! - git: init, two commits, gc, `git fsck --full --strict`, a clean status
//!   and the same commit ids as the same script run on the host.
//!
//! After each, the daemon unmounts and exits 0, `e2fsck -fn` finds the image
//! clean, and a second mount shows the same contents again. Needs root and
//! /dev/fuse (and tar, cp, getfattr, getfacl, git: scripts/setup.sh), and
//! says `SKIPPED: ...` otherwise.

mod common;

use common::{HostMount, Scratch, run};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

const IMAGE_SIZE: &str = "256M";

/// Whether the test can run here; a loud skip otherwise.
fn usable(what: &str, tools: &[&str]) -> bool {
    if !HostMount::usable_or_skip(what) {
        return false;
    }
    if let Some(t) = tools.iter().find(|t| !common::have_program(t)) {
        common::skip(what, &format!("{t} is not installed (scripts/setup.sh installs it)"));
        return false;
    }
    true
}

/// A fresh image and our daemon's mount of it.
fn fresh_mount(s: &Scratch) -> (std::path::PathBuf, HostMount) {
    let img = s.join("fs.img");
    common::mkfs(&img, IMAGE_SIZE, &["-t", "ext4", "-b", "4096"]);
    let m = remount(s, &img);
    (img, m)
}

fn remount(s: &Scratch, img: &Path) -> HostMount {
    HostMount::new(img, &s.join("mnt"), &[]).unwrap_or_else(|e| panic!("mount {img:?}: {e}"))
}

/// Unmounts (the daemon must exit 0) and checks the image with e2fsck.
fn unmount_and_check(m: HostMount, img: &Path) {
    m.unmount().unwrap_or_else(|e| panic!("unmount: {e}"));
    common::assert_fsck_clean(img);
}

// ---------------------------------------------------------------- manifests

/// What a tree holds at one relative path, as far as tar and cp carry it.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    /// Permission bits including setuid, setgid and sticky.
    mode: Mode,
    uid: u32,
    gid: u32,
    /// Size of regular files and symlinks (0 otherwise).
    size: u64,
    /// Modification time in whole seconds (tar keeps seconds).
    mtime: i64,
    /// sha256 of a regular file, target of a symlink, rdev of a device.
    content: String,
    /// For a file with several links: the first path (sorted) of its group.
    link_group: Option<String>,
    nlink: u64,
}

/// Permission bits, shown in octal.
#[derive(PartialEq, Eq)]
struct Mode(u32);

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// Every entry below `root` (the root itself as "."), without following
/// symlinks; file contents hashed by one `sha256sum` run.
fn manifest(root: &Path) -> BTreeMap<String, Entry> {
    let mut paths = Vec::new();
    walk(root, Path::new("."), &mut paths);
    paths.sort();
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    let mut files = Vec::new();
    for rel in &paths {
        let full = root.join(rel);
        let md = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("lstat {full:?}: {e}"));
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let (kind, content) = if ft.is_file() {
            files.push(rel.clone());
            ("file", String::new())
        } else if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            ("symlink", fs::read_link(&full).unwrap().to_string_lossy().into_owned())
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else if ft.is_char_device() {
            ("char", format!("{:x}", md.rdev()))
        } else if ft.is_block_device() {
            ("block", format!("{:x}", md.rdev()))
        } else {
            ("socket", String::new())
        };
        let link_group = (!ft.is_dir() && md.nlink() > 1)
            .then(|| inodes.entry((md.dev(), md.ino())).or_insert_with(|| rel.clone()).clone());
        let size = if ft.is_file() || ft.is_symlink() { md.size() } else { 0 };
        let nlink = if ft.is_dir() { 0 } else { md.nlink() };
        let e = Entry {
            kind,
            mode: Mode(md.mode() & 0o7777),
            uid: md.uid(),
            gid: md.gid(),
            size,
            mtime: md.mtime(),
            content,
            link_group,
            nlink,
        };
        out.insert(rel.clone(), e);
    }
    // One sha256sum for all regular files; -z: NUL-terminated, no escaping.
    for chunk in files.chunks(500) {
        let text = run(Command::new("sha256sum").arg("-z").arg("--").args(chunk).current_dir(root));
        for rec in text.split('\0').filter(|r| !r.is_empty()) {
            let (hash, name) = rec.split_at(64);
            out.get_mut(&name[2..]).unwrap_or_else(|| panic!("sha256sum named {name:?}")).content = hash.to_string();
        }
    }
    out
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) {
    out.push(rel.to_string_lossy().into_owned());
    let full = root.join(rel);
    if fs::symlink_metadata(&full).unwrap().is_dir() {
        for e in fs::read_dir(&full).unwrap_or_else(|e| panic!("readdir {full:?}: {e}")) {
            let e = e.unwrap();
            walk(root, &rel.join(e.file_name()), out);
        }
    }
}

/// Asserts two manifests are equal, naming the differing paths.
fn assert_same_tree(expected: &BTreeMap<String, Entry>, actual: &BTreeMap<String, Entry>, what: &str) {
    let mut diffs = Vec::new();
    for (p, e) in expected {
        match actual.get(p) {
            None => diffs.push(format!("missing {p}")),
            Some(a) if a != e => diffs.push(format!("{p}:\n   expected {e:?}\n   found    {a:?}")),
            _ => {}
        }
    }
    for p in actual.keys().filter(|p| !expected.contains_key(*p)) {
        diffs.push(format!("unexpected {p}"));
    }
    let n = diffs.len();
    diffs.truncate(20);
    assert!(n == 0, "{what}: {n} differences from the source ({} entries):\n{}", expected.len(), diffs.join("\n"));
}

// ---------------------------------------------------------------- the tar test

/// A small deterministic generator (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Sizes that cross ext4's boundaries: empty, inline-sized (< 60 bytes, the
/// i_block area), around one 4 KiB block, several blocks, more than one
/// extent's worth of small writes.
const SIZES: &[usize] = &[0, 1, 17, 59, 60, 61, 150, 1000, 4095, 4096, 4097, 12288, 65543, 300_000, 1_048_579];

/// Builds the tar test's source tree in `root` (which must not exist).
fn make_tree(root: &Path) -> usize {
    let mut rng = Lcg(0x5eed);
    let mut count = 0;
    fs::create_dir_all(root).unwrap();
    let dirs = ["a", "a/b", "a/b/c", "a/b/c/d", "e", "e/f", "g", "big", "empty", "empty/nested-empty"];
    for d in dirs {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    // Files of every size in every directory but the empty ones.
    let filled = ["", "a", "a/b", "a/b/c", "a/b/c/d", "e", "e/f", "g"];
    let mut i = 0;
    for d in filled {
        for (k, &size) in SIZES.iter().enumerate() {
            let p = root.join(d).join(format!("file-{k:02}-{size}"));
            fs::write(&p, rng.bytes(size)).unwrap();
            let mode = [0o644, 0o600, 0o755, 0o640, 0o444, 0o700][i % 6];
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            i += 1;
            count += 1;
        }
    }
    // A directory large enough to need several blocks (and an htree on ext4).
    for k in 0..200 {
        let p = root.join("big").join(format!("entry-with-a-longish-name-{k:04}"));
        fs::write(&p, rng.bytes(k % 70)).unwrap();
        count += 1;
    }
    // A sparse file: 64 MiB with two 4 KiB islands of data.
    let sparse = root.join("e/sparse");
    {
        let mut f = fs::File::create(&sparse).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&rng.bytes(4096)).unwrap();
        f.seek(SeekFrom::Start((64 << 20) - 4096)).unwrap();
        f.write_all(&rng.bytes(4096)).unwrap();
    }
    count += 1;
    // Odd names: spaces, UTF-8, a leading dash, the longest allowed name.
    for name in ["with space", "ünïcødé-名前", "-leading-dash", &"n".repeat(255)] {
        fs::write(root.join("g").join(name), name.as_bytes()).unwrap();
        count += 1;
    }
    // Symlinks: relative, absolute, dangling, to a directory, a target too
    // long for the inode (a slow symlink), and one at the inline limit.
    let links = [
        ("a/rel-link", "b/c/file-03-59".to_string()),
        ("a/abs-link", "/etc/hostname".to_string()),
        ("a/dangling", "does/not/exist".to_string()),
        ("e/dir-link", "../a/b".to_string()),
        ("e/long-link", format!("{}/target", "x".repeat(200))),
        ("e/59-link", "y".repeat(59)),
        ("e/60-link", "z".repeat(60)),
    ];
    for (p, t) in &links {
        symlink(t, root.join(p)).unwrap();
        count += 1;
    }
    // Hard links: a group of three across directories, and a pair.
    fs::hard_link(root.join("a/file-07-1000"), root.join("e/hard-1")).unwrap();
    fs::hard_link(root.join("a/file-07-1000"), root.join("a/b/c/d/hard-2")).unwrap();
    fs::hard_link(root.join("file-00-0"), root.join("g/hard-empty")).unwrap();
    count += 3;
    // Special files.
    run(Command::new("mkfifo").arg(root.join("g/fifo")));
    run(Command::new("mknod").arg(root.join("g/null-dev")).args(["c", "1", "3"]));
    run(Command::new("mknod").arg(root.join("g/block-dev")).args(["b", "7", "200"]));
    count += 3;
    // Special modes and owners.
    fs::set_permissions(root.join("a/file-02-17"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("a/file-03-59"), fs::Permissions::from_mode(0o2750)).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("e/f"), fs::Permissions::from_mode(0o700)).unwrap();
    run(Command::new("chown").arg("1000:1000").arg(root.join("e/file-04-60")));
    run(Command::new("chown").arg("-h").arg("12345:54321").arg(root.join("a/dangling")));
    run(Command::new("chown").arg("65534:65534").arg(root.join("e/f")));
    // mtimes: distinct old times, children before parents.
    let mut all = Vec::new();
    walk(root, Path::new("."), &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for (k, rel) in all.iter().enumerate() {
        let t = 1_500_000_000 + (k as i64) * 3607;
        let p = root.join(rel);
        if fs::symlink_metadata(&p).unwrap().file_type().is_symlink() {
            run(Command::new("touch").arg("-h").arg("-d").arg(format!("@{t}")).arg(&p));
        } else if fs::symlink_metadata(&p).unwrap().is_file() {
            let f = fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64)).unwrap();
        } else {
            run(Command::new("touch").arg("-d").arg(format!("@{t}")).arg(&p));
        }
    }
    count
}

#[test]
fn tar_round_trip() {
    const WHAT: &str = "real_tools: tar round trip";
    if !usable(WHAT, &["tar", "sha256sum", "mkfifo", "mknod"]) {
        return;
    }
    let s = Scratch::new("tar");
    let src = s.join("src");
    let n = make_tree(&src);
    assert!(n > 300, "generated only {n} files");
    let expected = manifest(&src);
    let tarball = s.join("src.tar");
    run(Command::new("tar").args(["--numeric-owner", "-cSf"]).arg(&tarball).arg("-C").arg(&src).arg("."));

    let (img, m) = fresh_mount(&s);
    let dst = m.path().join("tree");
    fs::create_dir(&dst).unwrap();
    run(Command::new("tar").args(["--numeric-owner", "-xpf"]).arg(&tarball).arg("-C").arg(&dst));
    assert_same_tree(&expected, &manifest(&dst), "tree extracted onto the mount");
    let sparse = fs::metadata(dst.join("e/sparse")).unwrap();
    assert!(sparse.blocks() * 512 < 1 << 20, "sparse file lost its holes: {} blocks of 512 B", sparse.blocks());
    // Pack it again from the mount and unpack on the host.
    let back_tar = s.join("back.tar");
    run(Command::new("tar").args(["--numeric-owner", "-cSf"]).arg(&back_tar).arg("-C").arg(&dst).arg("."));
    let back = s.join("back");
    fs::create_dir(&back).unwrap();
    run(Command::new("tar").args(["--numeric-owner", "-xpf"]).arg(&back_tar).arg("-C").arg(&back));
    assert_same_tree(&expected, &manifest(&back), "tree packed from the mount");
    unmount_and_check(m, &img);

    // Persisted: the same tree on a second mount.
    let m = remount(&s, &img);
    assert_same_tree(&expected, &manifest(&m.path().join("tree")), "tree after remount");
    unmount_and_check(m, &img);
}

// ---------------------------------------------------------------- xattrs and ACLs

/// `getfattr -R -h -d -m - -e hex .` in `root`, as sorted per-file blocks
/// with sorted attribute lines (directory order differs between file systems).
fn xattr_dump(root: &Path) -> String {
    let text = run(Command::new("getfattr").args(["-R", "-h", "-d", "-m", "-", "-e", "hex", "."]).current_dir(root));
    sorted_blocks(&text, true)
}

/// `getfacl -R -n .` in `root` (numeric ids), as sorted per-file blocks.
fn acl_dump(root: &Path) -> String {
    let text = run(Command::new("getfacl").args(["-R", "-n", "."]).current_dir(root));
    sorted_blocks(&text, false)
}

/// Splits tool output into blank-line-separated blocks, sorts the lines
/// after each block's "# file:" header (when `sort_lines`), then the blocks.
fn sorted_blocks(text: &str, sort_lines: bool) -> String {
    let mut blocks: Vec<String> = text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            let mut lines: Vec<&str> = b.lines().collect();
            if sort_lines && lines.len() > 1 {
                lines[1..].sort();
            }
            lines.join("\n")
        })
        .collect();
    blocks.sort();
    blocks.join("\n\n")
}

/// Asserts two dumps from [`xattr_dump`] or [`acl_dump`] are equal, showing
/// only the per-file blocks that differ.
fn assert_same_dump(expected: &str, actual: &str, what: &str) {
    let e: Vec<&str> = expected.split("\n\n").collect();
    let a: Vec<&str> = actual.split("\n\n").collect();
    let missing: Vec<&&str> = e.iter().filter(|b| !a.contains(b)).collect();
    let extra: Vec<&&str> = a.iter().filter(|b| !e.contains(b)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: blocks expected but not found:\n{}\n\nfound instead:\n{}",
        missing.iter().map(|b| b.to_string()).collect::<Vec<_>>().join("\n\n"),
        extra.iter().map(|b| b.to_string()).collect::<Vec<_>>().join("\n\n")
    );
}

fn setfattr(p: &Path, name: &str, value: &str) {
    run(Command::new("setfattr").arg("-n").arg(name).arg("-v").arg(value).arg(p));
}

fn setfacl(p: &Path, args: &[&str]) {
    run(Command::new("setfacl").args(args).arg(p));
}

/// The xattr test's source: files and directories with user and trusted
/// xattrs (empty, binary, a large value, many names) and access and default ACLs.
fn make_xattr_tree(root: &Path) {
    fs::create_dir_all(root.join("plain/sub")).unwrap();
    fs::create_dir_all(root.join("dacl")).unwrap();
    for (i, name) in
        ["one", "empty-value", "binary", "large", "many", "acl", "both", "plain/sub/deep"].iter().enumerate()
    {
        fs::write(root.join(name), format!("{name} {i}\n").repeat(i * 10)).unwrap();
    }
    setfattr(&root.join("one"), "user.color", "blue");
    setfattr(&root.join("empty-value"), "user.empty", "");
    setfattr(&root.join("binary"), "user.bin", "0x00ff7f80fe0001");
    setfattr(&root.join("large"), "user.large", &format!("0x{}", "ab".repeat(2000)));
    for k in 0..25 {
        setfattr(&root.join("many"), &format!("user.attribute-number-{k}"), &format!("value {k}"));
    }
    setfattr(&root.join("both"), "user.x", "y");
    setfattr(&root.join("both"), "trusted.t", "root only");
    setfattr(&root.join("plain"), "user.on-a-dir", "dir value");
    setfattr(&root.join("plain/sub/deep"), "user.deep", "deep value");
    setfacl(&root.join("acl"), &["-m", "u:1000:rw-,u:1001:r--,g:100:r--,m::rw-"]);
    setfacl(&root.join("both"), &["-m", "g:1000:rwx"]);
    setfacl(&root.join("plain/sub"), &["-m", "u:1002:rwx"]);
    // A default ACL, and entries created under it that inherit it.
    setfacl(&root.join("dacl"), &["-d", "-m", "u:1000:rwx,g:100:r-x,o::---"]);
    setfacl(&root.join("dacl"), &["-m", "u:1001:r-x"]);
    fs::write(root.join("dacl/inherited"), b"inherits the default ACL\n").unwrap();
    fs::create_dir(root.join("dacl/subdir")).unwrap();
    fs::write(root.join("dacl/subdir/nested"), b"nested\n").unwrap();
    symlink("one", root.join("link-to-one")).unwrap();
}

/// Creates files and directories under the default ACL directory, under two
/// umasks (a default ACL overrides the umask): the same on both sides.
fn create_under_default_acl(root: &Path) {
    let script = "umask 022; echo a > dacl/new-022; mkdir dacl/newdir-022; \
                  umask 077; echo b > dacl/new-077; mkdir dacl/newdir-077; mkdir dacl/subdir/x; \
                  mkfifo dacl/fifo-077";
    run(Command::new("sh").arg("-ec").arg(script).current_dir(root));
}

#[test]
fn cp_xattrs_and_acls() {
    const WHAT: &str = "real_tools: cp -a with xattrs and ACLs";
    if !usable(WHAT, &["cp", "getfattr", "setfattr", "getfacl", "setfacl", "sha256sum"]) {
        return;
    }
    let s = Scratch::new("xattr");
    let src = s.join("src");
    make_xattr_tree(&src);
    let (img, m) = fresh_mount(&s);
    let dst = m.path().join("copy");
    let out = Command::new("cp").args(["-a", "--preserve=xattr"]).arg(&src).arg(&dst).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "cp -a onto the mount: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(&manifest(&src), &manifest(&dst), "cp -a copy");
    let (src_x, src_a) = (xattr_dump(&src), acl_dump(&src));
    assert!(
        src_x.contains("user.large=0xabab") && src_a.contains("default:user:1000:rwx"),
        "source lacks its attributes:\n{src_x}\n{src_a}"
    );
    assert_same_dump(&src_x, &xattr_dump(&dst), "getfattr of the copy differs from the source");
    assert_same_dump(&src_a, &acl_dump(&dst), "getfacl of the copy differs from the source");
    // New entries under the default ACL inherit it as on the host.
    create_under_default_acl(&src);
    create_under_default_acl(&dst);
    let (src_x, src_a) = (xattr_dump(&src), acl_dump(&src));
    assert_same_dump(&src_a, &acl_dump(&dst), "ACLs inherited on the mount differ from the host's");
    assert_same_dump(&src_x, &xattr_dump(&dst), "xattrs after inheritance differ from the host's");
    unmount_and_check(m, &img);

    let m = remount(&s, &img);
    let dst = m.path().join("copy");
    assert_same_dump(&src_x, &xattr_dump(&dst), "getfattr after remount");
    assert_same_dump(&src_a, &acl_dump(&dst), "getfacl after remount");
    unmount_and_check(m, &img);
}

// ---------------------------------------------------------------- git

/// Two commits with fixed authors and dates (so commit ids are reproducible),
/// then gc and fsck. Contents: text, a binary, an executable, a symlink,
/// nested directories, a rename, a delete, 60 more files in the second commit.
const GIT_SCRIPT: &str = r#"
git init -q -b main repo
cd repo
mkdir -p src/nested/deeper docs
seq 1 2000 > src/numbers.txt
printf 'hello\n' > README
printf '#!/bin/sh\necho hi\n' > run.sh; chmod 755 run.sh
head -c 100000 /dev/zero | tr '\0' 'q' > docs/big.bin
printf 'deep\n' > src/nested/deeper/leaf.txt
ln -s README link-to-readme
git add -A
git commit -q -m first
seq 1 3000 | sed 's/$/ changed/' > src/numbers.txt
git mv README README.md
git rm -q docs/big.bin
for i in $(seq 1 60); do printf 'file %s\n' "$i" > "src/nested/gen-$i.txt"; done
git add -A
git commit -q -m second
git gc -q
git fsck --full --strict
git status --porcelain
git log --format='%H %s'
"#;

/// Runs `script` with bash in `dir`, with a private HOME and fixed identities.
fn git_run(dir: &Path, home: &Path, script: &str) -> String {
    fs::create_dir_all(home).unwrap();
    run(Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.org")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.org")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z"))
}

#[test]
fn git_repository() {
    const WHAT: &str = "real_tools: git";
    if !usable(WHAT, &["git", "bash"]) {
        return;
    }
    let s = Scratch::new("git");
    let host = s.join("host");
    fs::create_dir(&host).unwrap();
    let expected = git_run(&host, &s.join("home"), GIT_SCRIPT);
    assert_eq!(expected.lines().count(), 2, "host run: expected two log lines, no status:\n{expected}");

    let (img, m) = fresh_mount(&s);
    let got = git_run(m.path(), &s.join("home"), GIT_SCRIPT);
    assert_eq!(got, expected, "git on the mount: status/log differ from the host's");
    let checkout = manifest(&m.path().join("repo/src"));
    unmount_and_check(m, &img);

    let m = remount(&s, &img);
    let again = git_run(
        &m.path().join("repo"),
        &s.join("home"),
        "git fsck --full --strict; git status --porcelain; git log --format='%H %s'",
    );
    assert_eq!(again, expected, "git after remount");
    assert_same_tree(&checkout, &manifest(&m.path().join("repo/src")), "work tree after remount");
    unmount_and_check(m, &img);
}
