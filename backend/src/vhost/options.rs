//! What `ext4-virtiofsd serve` is told: its command line (with the words
//! virtiofsd and libvirt use where they mean the same), a TOML config
//! file for everything, and the settings that result (the command line
//! overrides the file).

use crate::adapter::attr::CachePolicy;
use crate::dax::InodeDax;
use ext4::fs::inode::atime::AtimeOptions;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Tag when none is given.
pub const DEFAULT_TAG: &str = "ext4fs";

/// `serve` on the command line.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// The ext4 image file to serve.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The vhost-user socket to create and listen on.
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
    /// A listening socket inherited from the caller (libvirt), instead of --socket-path.
    #[arg(long)]
    pub fd: Option<i32>,
    /// The tag the guest mounts (`mount -t virtiofs TAG DIR`), answered in the
    /// device config (QEMU 7.2's vhost-user-fs-pci has its own `tag=`).
    #[arg(long)]
    pub tag: Option<String>,
    /// Never write to the image (the guest sees EROFS).
    #[arg(long)]
    pub read_only: bool,
    /// What the guest may cache.
    #[arg(long, value_enum)]
    pub cache: Option<CachePolicy>,
    /// Worker threads per device.
    #[arg(long)]
    pub thread_pool_size: Option<usize>,
    /// Request queues (besides the high-priority queue).
    #[arg(long)]
    pub num_request_queues: Option<usize>,
    /// A TOML config file (see configs/); the command line overrides it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// After a frontend disconnects, wait for the next one instead of exiting.
    #[arg(long)]
    pub keep_running: bool,
    /// Log level: error, warn, info, debug, trace or off (RUST_LOG also works).
    #[arg(long)]
    pub log_level: Option<String>,
    /// Group that may connect to the socket (mode 0660 instead of 0600).
    #[arg(long)]
    pub socket_group: Option<String>,
    /// Let the guest cache writes (FUSE writeback cache).
    #[arg(long)]
    pub writeback: bool,
    /// When reads move atimes: relatime (default), strictatime or noatime,
    /// optionally with `,nodiratime`.
    #[arg(long, value_name = "POLICY[,nodiratime]")]
    pub atime: Option<AtimeOptions>,
    /// virtiofsd's sandbox; only `none` is meaningful here (the daemon
    /// touches no host path but the image and the socket).
    #[arg(long)]
    pub sandbox: Option<String>,
    /// virtiofsd's shared directory: here it must name the image file.
    #[arg(long)]
    pub shared_dir: Option<PathBuf>,
    /// virtiofsd's --xattr: extended attributes are always served.
    #[arg(long)]
    pub xattr: bool,
    /// virtiofsd's --posix-lock: POSIX locks are always served.
    #[arg(long)]
    pub posix_lock: bool,
    /// virtiofsd's --announce-submounts: an image has no submounts.
    #[arg(long)]
    pub announce_submounts: bool,
    /// Size of the DAX window offered to the guest (e.g. 64M, 1G; a
    /// multiple of 2 MiB); 0, the default, offers none.
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
    /// Which files a guest mounted `-o dax=inode` maps through the window.
    #[arg(long, value_enum)]
    pub inode_dax: Option<InodeDax>,
    /// virtiofsd/libvirt `-o` options: source=IMG, cache=, xattr,
    /// posix_lock, no_flock, writeback, no_writeback, sandbox=none,
    /// log_level=, thread_pool_size=, tag=, readonly, announce_submounts;
    /// and the mount's relatime, strictatime, noatime, nodiratime.
    #[arg(short = 'o', action = clap::ArgAction::Append, value_name = "OPT[,OPT...]")]
    pub options: Vec<String>,
}

/// The config file: every field optional, unknown fields refused.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The ext4 image file.
    pub image: Option<PathBuf>,
    /// The vhost-user socket.
    pub socket_path: Option<PathBuf>,
    /// The mount tag.
    pub tag: Option<String>,
    /// Never write the image.
    pub read_only: Option<bool>,
    /// never, auto or always.
    pub cache: Option<String>,
    /// Worker threads per device.
    pub thread_pool_size: Option<usize>,
    /// Request queues.
    pub num_request_queues: Option<usize>,
    /// Wait for the next frontend after a disconnect.
    pub keep_running: Option<bool>,
    /// Log level.
    pub log_level: Option<String>,
    /// Group that may connect to the socket.
    pub socket_group: Option<String>,
    /// FUSE writeback cache.
    pub writeback: Option<bool>,
    /// Most F_SETLKW requests blocked at once.
    pub max_lock_waiters: Option<usize>,
    /// DAX window size ("1G"; "0" for none).
    pub cache_size: Option<String>,
    /// flag, always or never.
    pub inode_dax: Option<InodeDax>,
    /// relatime, strictatime or noatime, optionally with ",nodiratime".
    pub atime: Option<String>,
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Where the device listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Create a socket at this path.
    Path(PathBuf),
    /// Use this inherited listening socket.
    Fd(i32),
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    /// The image.
    pub image: PathBuf,
    /// The socket.
    pub listen: Listen,
    /// The mount tag.
    pub tag: String,
    /// Never write the image.
    pub read_only: bool,
    /// What the guest may cache.
    pub cache: CachePolicy,
    /// Worker threads per device.
    pub threads: usize,
    /// Request queues.
    pub request_queues: usize,
    /// Wait for the next frontend after a disconnect.
    pub keep_running: bool,
    /// Log level, if set.
    pub log_level: Option<String>,
    /// Group that may connect to the socket.
    pub socket_group: Option<String>,
    /// FUSE writeback cache.
    pub writeback: bool,
    /// Most F_SETLKW requests blocked at once.
    pub max_lock_waiters: usize,
    /// DAX window size in bytes (0: no window).
    pub cache_size: u64,
    /// Which files get FUSE_ATTR_DAX for `-o dax=inode`.
    pub inode_dax: InodeDax,
    /// When reads move atimes.
    pub atime: AtimeOptions,
}

fn parse_cache(s: &str) -> Result<CachePolicy, String> {
    match s {
        "never" | "none" => Ok(CachePolicy::Never),
        "auto" => Ok(CachePolicy::Auto),
        "always" => Ok(CachePolicy::Always),
        "metadata" => Err("cache=metadata is not offered: use never, auto or always".into()),
        _ => Err(format!("unknown cache mode {s:?}: use never, auto or always")),
    }
}

/// Granularity of a Linux guest's DAX window (FUSE_DAX_SZ).
pub const DAX_RANGE: u64 = 2 << 20;

/// A size such as `1G`, `64M`, `2097152` (binary suffixes K, M, G, T).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("size {s:?}: unknown suffix {c:?} (use K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num.parse().map_err(|_| format!("size {s:?} is not a number"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

fn parse_cache_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n % DAX_RANGE != 0 {
        return Err(format!("--cache-size {s}: the DAX window must be a multiple of 2 MiB (guests map 2 MiB ranges)"));
    }
    Ok(n)
}

fn parse_count(what: &str, s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("{what}={s:?} is not a number"))
}

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

fn check_log_level(s: &str) -> Result<String, String> {
    let l = s.to_ascii_lowercase();
    if LOG_LEVELS.contains(&l.as_str()) {
        Ok(l)
    } else {
        Err(format!("unknown log level {s:?}: use one of {LOG_LEVELS:?}"))
    }
}

fn check_sandbox(s: &str) -> Result<(), String> {
    if s == "none" {
        Ok(())
    } else {
        Err(format!(
            "sandbox {s:?} is not offered: ext4-virtiofsd opens only its image and socket and never resolves a guest path on the host; use --sandbox none"
        ))
    }
}

impl ServeArgs {
    /// The settings: defaults, then the config file, then `-o` options,
    /// then the other flags.
    pub fn resolve(&self) -> Result<ServeSettings, String> {
        let mut f = match &self.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        // -o options, as libvirt and virtiofsd's older command line pass them.
        let mut atime_words = Vec::new();
        for opt in self.options.iter().flat_map(|o| o.split(',')).filter(|o| !o.is_empty()) {
            let (k, v) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            match (k, v) {
                ("source", Some(v)) => f.image = Some(v.into()),
                ("cache", Some(v)) => f.cache = Some(v.into()),
                ("cache_size", Some(v)) => f.cache_size = Some(v.into()),
                ("tag", Some(v)) => f.tag = Some(v.into()),
                ("log_level", Some(v)) => f.log_level = Some(v.into()),
                ("thread_pool_size", Some(v)) => f.thread_pool_size = Some(parse_count(k, v)?),
                ("sandbox", Some(v)) => check_sandbox(v)?,
                ("writeback", None) => f.writeback = Some(true),
                ("no_writeback", None) => f.writeback = Some(false),
                ("readonly" | "ro", None) => f.read_only = Some(true),
                ("relatime" | "strictatime" | "noatime" | "nodiratime" | "diratime", None) => atime_words.push(k),
                ("xattr" | "posix_lock" | "no_flock" | "announce_submounts" | "no_announce_submounts", None) => {}
                ("no_xattr", None) => {
                    return Err("-o no_xattr: extended attributes are part of the image and always served".into());
                }
                ("no_posix_lock", None) => return Err("-o no_posix_lock: POSIX locks are always served".into()),
                ("flock", None) => return Err(
                    "-o flock: flock(2) locks are not offered (the guest gets ENOSYS and falls back to local locks)"
                        .into(),
                ),
                _ => return Err(format!("unknown or malformed option -o {opt}")),
            }
        }
        if !atime_words.is_empty() {
            f.atime = Some(atime_words.join(","));
        }
        let atime = match (self.atime, &f.atime) {
            (Some(a), _) => a,
            (None, Some(s)) => s.parse()?,
            (None, None) => AtimeOptions::default(),
        };
        if let Some(s) = &self.sandbox {
            check_sandbox(s)?;
        }
        let image = self
            .image
            .clone()
            .or(self.shared_dir.clone())
            .or(f.image)
            .ok_or("no image: pass --image IMG (or image = \"...\" in the config)")?;
        let listen = match (self.fd, self.socket_path.clone().or(f.socket_path)) {
            (Some(_), Some(_)) if self.socket_path.is_some() => {
                return Err("--fd and --socket-path exclude each other".into());
            }
            (Some(fd), _) => Listen::Fd(fd),
            (None, Some(p)) => Listen::Path(p),
            (None, None) => return Err("no socket: pass --socket-path SOCK or --fd N".into()),
        };
        let cache = match (self.cache, &f.cache) {
            (Some(c), _) => c,
            (None, Some(s)) => parse_cache(s)?,
            (None, None) => CachePolicy::Auto,
        };
        let log_level = self.log_level.clone().or(f.log_level).map(|l| check_log_level(&l)).transpose()?;
        let threads = self
            .thread_pool_size
            .or(f.thread_pool_size)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()).max(2));
        let request_queues = self.num_request_queues.or(f.num_request_queues).unwrap_or(1);
        if request_queues == 0 || request_queues > 64 {
            return Err(format!("--num-request-queues {request_queues}: between 1 and 64"));
        }
        if threads == 0 || threads > 1024 {
            return Err(format!("--thread-pool-size {threads}: between 1 and 1024"));
        }
        let cache_size =
            self.cache_size.clone().or(f.cache_size).map(|s| parse_cache_size(&s)).transpose()?.unwrap_or(0);
        let tag = self.tag.clone().or(f.tag).unwrap_or_else(|| DEFAULT_TAG.into());
        super::config_space::FsConfigSpace::new(&tag, request_queues as u32).map_err(|e| e.to_string())?;
        Ok(ServeSettings {
            image,
            listen,
            tag,
            read_only: self.read_only || f.read_only.unwrap_or(false),
            cache,
            threads,
            request_queues,
            keep_running: self.keep_running || f.keep_running.unwrap_or(false),
            log_level,
            socket_group: self.socket_group.clone().or(f.socket_group),
            writeback: self.writeback || f.writeback.unwrap_or(false),
            max_lock_waiters: f.max_lock_waiters.unwrap_or(crate::fuse::server::DEFAULT_MAX_LOCK_WAITERS),
            cache_size,
            inode_dax: self.inode_dax.or(f.inode_dax).unwrap_or_default(),
            atime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2097152"), Ok(2 << 20));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_cache_size("3M").is_err(), "not a multiple of 2 MiB");
        assert_eq!(parse_cache_size("4M"), Ok(4 << 20));
    }

    #[test]
    fn atime_from_flag_o_words_and_default() {
        use ext4::fs::inode::atime::AtimePolicy;
        let args = |atime: Option<&str>, o: &[&str]| ServeArgs {
            image: Some("img".into()),
            socket_path: Some("s".into()),
            atime: atime.map(|a| a.parse().unwrap()),
            options: o.iter().map(|s| s.to_string()).collect(),
            ..ServeArgs::default()
        };
        assert_eq!(args(None, &[]).resolve().unwrap().atime, AtimeOptions::default());
        let o = args(None, &["noatime,nodiratime"]).resolve().unwrap().atime;
        assert_eq!(o, AtimeOptions { policy: AtimePolicy::Noatime, nodiratime: true });
        let o = args(Some("strictatime"), &["noatime"]).resolve().unwrap().atime;
        assert_eq!(o.policy, AtimePolicy::Strictatime, "the flag overrides -o");
        assert!(args(None, &["noatime", "strictatime"]).resolve().unwrap_err().contains("two policies"));
    }
}
