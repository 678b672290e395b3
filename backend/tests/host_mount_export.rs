//! File handles through the host mount behave as on the kernel's ext4
//! (FUSE_EXPORT_SUPPORT, generic/426, 467, 477, 756, 777): a handle taken
//! with name_to_handle_at(2) opens with open_by_handle_at(2) after the
//! kernel forgot the inode — across an unmount and a mount of the image,
//! and after `echo 2 > /proc/sys/vm/drop_caches` (dentries and inodes; the
//! tests run as root, which loop mounts need anyway) — a directory's handle
//! reconnects to its path, and the handle of a deleted file is ESTALE.
//! Each test runs the same steps on a kernel loop mount of a fresh image
//! and on our host mount of another, and compares what they saw.

mod common;

use common::{HostMount, KernelMount, Scratch, assert_fsck_clean, mkfs};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// MAX_HANDLE_SZ.
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
#[derive(Clone, Copy)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// name_to_handle_at(2) of `p`.
fn handle_of(p: &Path) -> FileHandle {
    let mut h = FileHandle { handle_bytes: MAX_HANDLE_SZ as u32, handle_type: 0, f_handle: [0; MAX_HANDLE_SZ] };
    let mut mount_id = 0;
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path; `h` has room for the
    // `handle_bytes` bytes the kernel may write; `mount_id` is an int.
    let r = unsafe { libc::name_to_handle_at(libc::AT_FDCWD, c.as_ptr(), (&raw mut h).cast(), &mut mount_id, 0) };
    assert_eq!(r, 0, "name_to_handle_at {}: {}", p.display(), std::io::Error::last_os_error());
    h
}

/// open_by_handle_at(2) of `h` on the mount at `mnt`, or the errno.
fn open_handle(mnt: &Path, h: &FileHandle, flags: i32) -> Result<OwnedFd, i32> {
    let m = std::fs::File::open(mnt).unwrap();
    let mut h = *h;
    // SAFETY: `m` is an open descriptor on the mount; `h` is a handle
    // name_to_handle_at filled in.
    let fd = unsafe { libc::open_by_handle_at(m.as_raw_fd(), (&raw mut h).cast(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1));
    }
    // SAFETY: a new descriptor, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where descriptor `fd` leads, relative to the mount `mnt`.
fn path_of(fd: &OwnedFd, mnt: &Path) -> String {
    let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    match p.strip_prefix(mnt) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => format!("outside the mount: {}", p.display()),
    }
}

/// What one step saw: its name and a description to compare.
type Seen = Vec<(String, String)>;

/// Handles taken on the first mount.
struct Handles {
    file: FileHandle,
    dir: FileHandle,
    renamed_dir: FileHandle,
    deleted: FileHandle,
}

/// Makes the tree and takes the handles: `d` (mode 0700) holds the file
/// `f`, the directory `sub/deeper` and a file deleted afterwards; a
/// directory is renamed after its handle was taken.
fn prepare(mnt: &Path) -> Handles {
    let d = mnt.join("d");
    std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
    std::fs::create_dir(d.join("old")).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(d.join("f"), b"handle data").unwrap();
    std::fs::write(d.join("gone"), b"x").unwrap();
    let h = Handles {
        file: handle_of(&d.join("f")),
        dir: handle_of(&d.join("sub/deeper")),
        renamed_dir: handle_of(&d.join("old")),
        deleted: handle_of(&d.join("gone")),
    };
    std::fs::remove_file(d.join("gone")).unwrap();
    std::fs::rename(d.join("old"), d.join("sub/new")).unwrap();
    h
}

/// Opens each handle on the mount at `mnt` (the inodes forgotten meanwhile).
fn use_handles(mnt: &Path, h: &Handles) -> Seen {
    let mut seen = Vec::new();
    let file = match open_handle(mnt, &h.file, libc::O_RDONLY) {
        Ok(fd) => format!(
            "{:?}",
            String::from_utf8_lossy(&std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap())
        ),
        Err(e) => format!("errno {e}"),
    };
    seen.push(("file".to_string(), file));
    for (what, handle) in [("directory", &h.dir), ("renamed directory", &h.renamed_dir)] {
        let dir = match open_handle(mnt, handle, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(fd) => path_of(&fd, mnt),
            Err(e) => format!("errno {e}"),
        };
        seen.push((what.to_string(), dir));
    }
    let deleted = open_handle(mnt, &h.deleted, libc::O_RDONLY).map(|_| "opened".to_string());
    seen.push(("deleted file".to_string(), deleted.unwrap_or_else(|e| format!("errno {e}"))));
    seen
}

/// `echo 2 > /proc/sys/vm/drop_caches`: the kernel evicts unused dentries
/// and inodes (machine-wide; these tests run as root).
fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", b"2").expect("drop_caches (needs root)");
}

/// A mount of an image: the kernel's or ours.
trait Mount {
    fn at(&self) -> &Path;
    fn close(self: Box<Self>);
}

impl Mount for KernelMount {
    fn at(&self) -> &Path {
        self.path()
    }
    fn close(self: Box<Self>) {
        self.unmount().unwrap();
    }
}

impl Mount for HostMount {
    fn at(&self) -> &Path {
        self.path()
    }
    fn close(self: Box<Self>) {
        self.unmount().unwrap();
    }
}

/// Runs [`prepare`] and [`use_handles`] on a mount made by `mount` of a
/// fresh image, forgetting the inodes in between by a new mount
/// (`remount`) or by dropping the caches.
fn steps(img: &Path, mount: &dyn Fn(&Path) -> Option<Box<dyn Mount>>, remount: bool) -> Option<Seen> {
    mkfs(img, "32M", &["-t", "ext4"]);
    let m = mount(img)?;
    let h = prepare(m.at());
    let m = if remount {
        m.close();
        mount(img)?
    } else {
        drop_caches();
        m
    };
    let seen = use_handles(m.at(), &h);
    m.close();
    Some(seen)
}

/// The steps on the kernel's ext4 and on our host mount (default cache and
/// no cache); the differences. `None` after a loud skip.
fn compare(what: &str, remount: bool) -> Option<Vec<String>> {
    if !HostMount::usable_or_skip(what) {
        return None;
    }
    let s = Scratch::new("export");
    let kmnt = s.join("kmnt");
    let kernel = |img: &Path| -> Option<Box<dyn Mount>> {
        KernelMount::or_skip(img, &kmnt, "", what).map(|m| Box::new(m) as Box<dyn Mount>)
    };
    let expected = steps(&s.join("k.img"), &kernel, remount)?;
    assert_eq!(expected[0].1, format!("{:?}", "handle data"), "the kernel's ext4 opens the file's handle");
    let mut wrong = Vec::new();
    for args in [&[][..], &["--cache", "never"][..]] {
        let (img, mnt): (PathBuf, PathBuf) = (s.join("fs.img"), s.join("mnt"));
        let ours = |img: &Path| -> Option<Box<dyn Mount>> {
            Some(Box::new(HostMount::new(img, &mnt, args).unwrap()) as Box<dyn Mount>)
        };
        let got = steps(&img, &ours, remount).unwrap();
        for (g, e) in got.iter().zip(&expected) {
            if g != e {
                wrong.push(format!("{} with {args:?}: {}, the kernel: {}", e.0, g.1, e.1));
            }
        }
        assert_eq!(got.len(), expected.len());
        assert_fsck_clean(&img);
    }
    Some(wrong)
}

#[test]
fn file_handles_open_after_a_new_mount_as_on_the_kernel() {
    let Some(wrong) = compare("file handles across a new mount", true) else { return };
    assert!(wrong.is_empty(), "file handles differ from the kernel's:\n{}", wrong.join("\n"));
}

#[test]
fn file_handles_open_after_the_caches_are_dropped_as_on_the_kernel() {
    let Some(wrong) = compare("file handles after drop_caches", false) else { return };
    assert!(wrong.is_empty(), "file handles differ from the kernel's:\n{}", wrong.join("\n"));
}
