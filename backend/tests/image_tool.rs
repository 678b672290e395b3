//! The `image` read subcommands against images packed by mke2fs, compared
//! with the source tree and with debugfs.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Fixture {
    dir: PathBuf,
    img: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(tag: &str, mkfs_args: &[&str]) -> Fixture {
    let dir = std::env::temp_dir().join(format!("image-tool-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello, world\n").unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("sub/big.bin"), &big).unwrap();
    std::fs::write(src.join("sub/deeper/leaf"), b"leaf").unwrap();
    symlink("hello.txt", src.join("link")).unwrap();
    let status = Command::new("setfattr").args(["-n", "user.color", "-v", "blue"]).arg(src.join("hello.txt")).status();
    if !status.map(|s| s.success()).unwrap_or(false) {
        // Without the attr tools, set it through Python (always present).
        let ok = Command::new("python3")
            .arg("-c")
            .arg(format!("import os; os.setxattr({:?}, 'user.color', b'blue')", src.join("hello.txt")))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let img = dir.join("fs.img");
    let out = Command::new("mke2fs")
        .args(["-q", "-F"])
        .args(mkfs_args)
        .arg("-d")
        .arg(&src)
        .arg(&img)
        .arg("32M")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Fixture { dir, img }
}

fn tool(args: &[&str], img: &Path) -> (bool, Vec<u8>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ext4-virtiofsd"));
    cmd.arg("image").arg(args[0]).arg(img).args(&args[1..]);
    let out = cmd.output().unwrap();
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ok(args: &[&str], img: &Path) -> String {
    let (success, stdout, stderr) = tool(args, img);
    assert!(success, "image {args:?} failed: {stderr}");
    String::from_utf8(stdout).unwrap()
}

fn debugfs(img: &Path, req: &str) -> String {
    let out = Command::new("debugfs").arg("-R").arg(req).arg(img).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(tag: &str, mkfs_args: &[&str]) {
    let fx = fixture(tag, mkfs_args);
    let img = &fx.img;

    // cat: byte-identical with the source and with debugfs.
    let (success, data, _) = tool(&["cat", "/sub/big.bin"], img);
    assert!(success);
    assert_eq!(data, std::fs::read(fx.dir.join("src/sub/big.bin")).unwrap());
    let (_, hello, _) = tool(&["cat", "hello.txt"], img);
    assert_eq!(hello, b"hello, world\n");

    // ls: the same names and inode numbers as debugfs.
    let ours = ok(&["ls", "/"], img);
    let theirs = debugfs(img, "ls -l /");
    for line in theirs.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (ino, name) = (fields[0], *fields.last().unwrap());
        assert!(
            ours.lines().any(|l| l.split_whitespace().next() == Some(ino) && l.ends_with(name)),
            "{tag}: debugfs lists {ino} {name}, we do not:\n{ours}"
        );
    }

    // stat: the same extents/blocks as debugfs.
    let ours = ok(&["stat", "/sub/big.bin"], img);
    let theirs = debugfs(img, "stat /sub/big.bin");
    let extents = |s: &str| -> Vec<String> {
        s.split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|t| t.starts_with('(') && t.contains("):") && !t.starts_with("(IND)") && !t.starts_with("(DIND)"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(extents(&ours), extents(&theirs), "{tag}: stat extents differ:\n{ours}\n--- debugfs:\n{theirs}");
    assert!(ours.contains("Size: 200000"), "{ours}");

    assert_eq!(ok(&["readlink", "/link"], img), "hello.txt\n");
    assert!(ok(&["getfattr", "/hello.txt"], img).contains("user.color=\"blue\""));
    assert!(ok(&["getfattr", "/hello.txt", "-n", "user.color", "-x"], img).contains("user.color=0x626c7565"));
    let tree = ok(&["tree"], img);
    for want in
        ["hello.txt  (13 bytes)", "sub/", "big.bin  (200000 bytes)", "deeper/", "leaf  (4 bytes)", "link -> hello.txt"]
    {
        assert!(tree.contains(want), "{tag}: tree lacks {want:?}:\n{tree}");
    }

    // Errors are clear and fail the command.
    let (success, _, err) = tool(&["cat", "/nope"], img);
    assert!(!success && err.contains("/nope") && err.contains("not found"), "{err}");
    let (success, _, err) = tool(&["cat", "/sub"], img);
    assert!(!success && err.contains("not a regular file"), "{err}");
}

#[test]
fn image_tools_ext4() {
    check("ext4", &["-t", "ext4"]);
}

#[test]
fn image_tools_ext3_block_maps() {
    check("ext3", &["-t", "ext3", "-b", "1024"]);
}

#[test]
fn garbage_image_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("image-tool-garbage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("garbage.img");
    std::fs::write(&img, vec![0x5a; 1 << 20]).unwrap();
    let (success, _, err) = tool(&["ls"], &img);
    assert!(!success && err.contains("superblock"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn fsck_clean(img: &Path) {
    let out = Command::new("e2fsck").arg("-fn").arg(img).output().unwrap();
    assert!(out.status.success(), "e2fsck -fn: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn attribute_tools_change_the_image_cleanly() {
    let fx = fixture("attrs", &["-t", "ext4"]);
    let img = &fx.img;
    ok(&["chmod", "0600", "/hello.txt"], img);
    ok(&["chown", "1234:99", "/hello.txt"], img);
    ok(&["truncate", "/sub/big.bin", "5000"], img);
    fsck_clean(img);
    // Each tool closes the image cleanly: journal empty, no needs_recovery.
    let header = Command::new("dumpe2fs").arg("-h").arg(img).output().unwrap();
    let header = String::from_utf8_lossy(&header.stdout);
    assert!(!header.contains("needs_recovery"), "{header}");
    let stat = debugfs(img, "stat /hello.txt");
    assert!(stat.contains("Mode:  0600") && stat.contains("User:  1234") && stat.contains("Group:    99"), "{stat}");
    let dest = fx.dir.join("out.bin");
    ok(&["get", "/sub/big.bin", dest.to_str().unwrap()], img);
    let want = std::fs::read(fx.dir.join("src/sub/big.bin")).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), &want[..5000]);
    // Growing makes a hole that reads as zeros.
    ok(&["truncate", "/sub/big.bin", "9000"], img);
    let (_, data, _) = tool(&["cat", "/sub/big.bin"], img);
    assert_eq!(&data[..5000], &want[..5000]);
    assert!(data[5000..].iter().all(|&b| b == 0) && data.len() == 9000);
    fsck_clean(img);
    ok(&["setfattr", "/hello.txt", "-n", "user.size", "-v", "large"], img);
    ok(&["setfattr", "/hello.txt", "-n", "user.bin", "-v", "0x00ff10"], img);
    ok(&["setfattr", "/hello.txt", "-n", "user.color", "-x"], img);
    fsck_clean(img);
    let attrs = ok(&["getfattr", "/hello.txt", "-x"], img);
    assert!(
        attrs.contains("user.size=0x6c61726765")
            && attrs.contains("user.bin=0x00ff10")
            && !attrs.contains("user.color"),
        "{attrs}"
    );
    assert!(debugfs(img, "ea_list /hello.txt").contains("user.size"));
    let (success, _, err) = tool(&["chmod", "999", "/hello.txt"], img);
    assert!(!success && err.contains("not octal"), "{err}");
}

#[test]
fn map_converts_inline_files_and_prints_image_ranges() {
    let fx = fixture("map", &["-t", "ext4", "-b", "4096", "-O", "inline_data"]);
    let img = &fx.img;
    assert!(debugfs(img, "stat /hello.txt").contains("Size of inline data"));
    let out = ok(&["map", "/hello.txt"], img);
    fsck_clean(img);
    let stat = debugfs(img, "stat /hello.txt");
    assert!(!stat.contains("inline data") && stat.contains("EXTENTS"), "{stat}");
    // The printed image offset holds the file's bytes.
    let row = out.lines().find(|l| l.trim_start().starts_with("0 ")).unwrap_or_else(|| panic!("{out}"));
    let image_offset: u64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
    let mut buf = [0u8; 13];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(img).unwrap(), &mut buf, image_offset).unwrap();
    assert_eq!(&buf, b"hello, world\n");
    // A 1 KiB-block image is refused with a clear message.
    let fx1 = fixture("map1k", &["-t", "ext4", "-b", "1024"]);
    let (success, _, err) = tool(&["map", "/sub/big.bin"], &fx1.img);
    assert!(!success && err.contains("DAX needs blocks of at least 4096"), "{err}");
}

#[test]
fn namespace_tools_change_the_image_cleanly() {
    let fx = fixture("ns", &["-t", "ext4"]);
    let img = &fx.img;
    let host = fx.dir.join("host.bin");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&host, &payload).unwrap();
    ok(&["mkdir", "/new"], img);
    ok(&["put", host.to_str().unwrap(), "/new/data.bin"], img);
    ok(&["put", host.to_str().unwrap(), "/hello.txt"], img); // replaces in place
    ok(&["ln", "/new/data.bin", "/new/hard"], img);
    ok(&["symlink", "new/data.bin", "/soft"], img);
    ok(&["mv", "/new", "/sub/moved"], img);
    ok(&["rm", "/sub/deeper/leaf"], img);
    ok(&["rm", "/sub/deeper"], img);
    fsck_clean(img);
    let (_, data, _) = tool(&["cat", "/sub/moved/data.bin"], img);
    assert!(data == payload);
    let (_, data, _) = tool(&["cat", "/hello.txt"], img);
    assert!(data == payload);
    let theirs = debugfs(img, "ls -l /sub/moved");
    assert!(theirs.contains("data.bin") && theirs.contains("hard"), "{theirs}");
    assert!(debugfs(img, "stat /sub/moved/data.bin").contains("Links: 2"));
    assert_eq!(ok(&["readlink", "/soft"], img), "new/data.bin\n");
    assert!(!ok(&["tree"], img).contains("deeper"));
    // Errors are clear and change nothing.
    let (success, _, err) = tool(&["rm", "/sub"], img);
    assert!(!success && err.contains("not empty"), "{err}");
    let (success, _, err) = tool(&["mkdir", "/sub/moved"], img);
    assert!(!success && err.contains("exists"), "{err}");
    fsck_clean(img);
}

/// The image lock: while this process holds the image open for writing,
/// `image put`, `image ls` and `mount` are refused with a message naming
/// the image; while it holds it read-only, the read commands work and the
/// writing ones are still refused; once it lets go, `put` works.
#[test]
fn a_locked_image_is_refused_with_a_clear_message() {
    let f = fixture("locked", &["-t", "ext4"]);
    let img = &f.img;
    let host = f.dir.join("host.bin");
    std::fs::write(&host, b"new data").unwrap();
    let refused = |args: &[&str], held: &str| {
        let (success, _, stderr) = tool(args, img);
        assert!(!success, "image {args:?} ran while the image was held for {held}");
        let want = format!("image {} is in use: another process has it open for {held}", img.display());
        assert!(stderr.contains(&want), "image {args:?}: {stderr}");
    };
    let writer = ext4::Ext4::open(img, &ext4::OpenOptions::default()).unwrap();
    refused(&["put", host.to_str().unwrap(), "/new.bin"], "writing");
    refused(&["ls", "/"], "writing");
    let mnt = f.dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ext4-virtiofsd")).arg("mount").arg(img).arg(&mnt).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mount ran on a locked image");
    assert!(stderr.contains("another process has it open for writing"), "mount: {stderr}");
    drop(writer);

    let reader = ext4::Ext4::open(img, &ext4::OpenOptions { read_only: true, ..Default::default() }).unwrap();
    assert!(ok(&["ls", "/"], img).contains("hello.txt"), "readers share the image");
    refused(&["put", host.to_str().unwrap(), "/new.bin"], "reading");
    drop(reader);
    ok(&["put", host.to_str().unwrap(), "/new.bin"], img);
    assert_eq!(ok(&["cat", "/new.bin"], img), "new data");
    fsck_clean(img);
}
