//! Command-line interface definition.

use clap::{Parser, Subcommand};
use ext4_virtiofsd::adapter::attr::CachePolicy;
use std::path::PathBuf;

/// Serves ext4 images to VMs over vhost-user virtio-fs.
#[derive(Debug, Parser)]
#[command(name = "ext4-virtiofsd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline tools that inspect an image without mounting it.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Serve an image to a VM as a vhost-user virtio-fs device (QEMU connects
    /// to the socket; the guest mounts the tag with `mount -t virtiofs`).
    Serve(Box<ext4_virtiofsd::vhost::ServeArgs>),
    /// Mount an image on the host through /dev/fuse (as root) and serve it
    /// until it is unmounted or the daemon gets SIGINT/SIGTERM.
    Mount {
        /// Image file.
        image: PathBuf,
        /// Where to mount it.
        mountpoint: PathBuf,
        /// Never write to the image.
        #[arg(long)]
        read_only: bool,
        /// What the kernel may cache.
        #[arg(long, value_enum, default_value_t = CachePolicy::Auto)]
        cache: CachePolicy,
        /// Worker threads (0: one per core, at least two).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Let the kernel cache writes and send them later (FUSE writeback
        /// cache): faster small writes, but data reaches the image only
        /// when the kernel flushes it. A full file system shows only at
        /// fsync/close (write() may accept more than fits).
        #[arg(long)]
        writeback: bool,
        /// Most F_SETLKW requests blocked at once, each waiting on a thread
        /// of its own; more are refused with ENOLCK.
        #[arg(long, default_value_t = ext4_virtiofsd::fuse::server::DEFAULT_MAX_LOCK_WAITERS)]
        max_lock_waiters: usize,
        /// Mount as plain `fuse` instead of `fuse.ext4-virtiofsd` (for
        /// tools such as xfstests' FSTYP=fuse that expect that type).
        #[arg(long)]
        no_subtype: bool,
        /// When reads move atimes: relatime (the default: only an atime not
        /// after the mtime/ctime or a day old), strictatime (every read) or
        /// noatime (never), optionally with `,nodiratime`.
        #[arg(long, default_value = "relatime", value_name = "POLICY[,nodiratime]")]
        atime: ext4::fs::inode::atime::AtimeOptions,
        /// Honour device nodes in the image (without it the mount is
        /// nodev: an image made elsewhere, e.g. by a guest, may hold any).
        #[arg(long)]
        dev: bool,
        /// Honour setuid/setgid bits on exec (without it the mount is nosuid).
        #[arg(long)]
        suid: bool,
    },
}

/// `image` subcommands. Paths inside the image are absolute or relative to its root.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List a directory (like `debugfs -R "ls -l"`).
    Ls {
        /// Image file.
        image: PathBuf,
        /// Directory inside the image.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Show an inode (like `debugfs -R stat`).
    Stat {
        /// Image file.
        image: PathBuf,
        /// Path inside the image.
        path: String,
    },
    /// Write a file's contents to standard output.
    Cat {
        /// Image file.
        image: PathBuf,
        /// File inside the image.
        path: String,
    },
    /// Print a symbolic link's target.
    Readlink {
        /// Image file.
        image: PathBuf,
        /// Symbolic link inside the image.
        path: String,
    },
    /// Print extended attributes (like `getfattr -d -m -`); ACLs also as text.
    Getfattr {
        /// Image file.
        image: PathBuf,
        /// Path inside the image.
        path: String,
        /// Only this attribute.
        #[arg(short, long)]
        name: Option<String>,
        /// Print values in hexadecimal.
        #[arg(short = 'x', long)]
        hex: bool,
    },
    /// Print the directory tree below a path.
    Tree {
        /// Image file.
        image: PathBuf,
        /// Directory inside the image.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Copy a file out of the image to a host file.
    Get {
        /// Image file.
        image: PathBuf,
        /// File inside the image.
        path: String,
        /// Host file to create.
        dest: PathBuf,
    },
    /// Copy a host file into the image (created, or replaced in place).
    Put {
        /// Image file.
        image: PathBuf,
        /// Host file to copy.
        source: PathBuf,
        /// Destination path inside the image.
        path: String,
    },
    /// Create a directory (its parent must exist).
    Mkdir {
        /// Image file.
        image: PathBuf,
        /// New directory inside the image.
        path: String,
        /// Octal permission bits.
        #[arg(short, long, default_value = "755")]
        mode: String,
    },
    /// Remove a file, symlink or empty directory.
    Rm {
        /// Image file.
        image: PathBuf,
        /// Path inside the image.
        path: String,
    },
    /// Rename or move a path inside the image.
    Mv {
        /// Image file.
        image: PathBuf,
        /// Existing path.
        from: String,
        /// New path (replaced if it exists and is compatible).
        to: String,
    },
    /// Create a hard link.
    Ln {
        /// Image file.
        image: PathBuf,
        /// Existing file.
        target: String,
        /// New link.
        path: String,
    },
    /// Create a symbolic link.
    Symlink {
        /// Image file.
        image: PathBuf,
        /// Link target (stored as given).
        target: String,
        /// New link inside the image.
        path: String,
    },
    /// Change permission bits (octal), like chmod.
    Chmod {
        /// Image file.
        image: PathBuf,
        /// Octal mode, e.g. 0644.
        mode: String,
        /// Path inside the image.
        path: String,
    },
    /// Change owner and optionally group, like chown UID[:GID].
    Chown {
        /// Image file.
        image: PathBuf,
        /// Numeric UID[:GID].
        owner: String,
        /// Path inside the image.
        path: String,
    },
    /// Print the image ranges backing a file range, like `filefrag -v`, by
    /// running the DAX mapping preparation (converts inline files; with
    /// --write also fills holes and unwritten ranges).
    Map {
        /// Image file.
        image: PathBuf,
        /// File inside the image.
        path: String,
        /// Start of the range (bytes, page aligned).
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Length of the range in bytes (default: to the end of the file).
        #[arg(long)]
        len: Option<u64>,
        /// Prepare a writable mapping.
        #[arg(long)]
        write: bool,
    },
    /// Set (or with --remove, remove) an extended attribute, like setfattr.
    Setfattr {
        /// Image file.
        image: PathBuf,
        /// Path inside the image.
        path: String,
        /// Attribute name, e.g. user.color.
        #[arg(short, long)]
        name: String,
        /// Value (text, or 0x-prefixed hex).
        #[arg(short, long, default_value = "")]
        value: String,
        /// Remove the attribute instead.
        #[arg(short = 'x', long)]
        remove: bool,
    },
    /// Set a regular file's size.
    Truncate {
        /// Image file.
        image: PathBuf,
        /// File inside the image.
        path: String,
        /// New size in bytes.
        size: u64,
    },
}
