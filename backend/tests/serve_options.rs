//! `ext4-virtiofsd serve` options: every example in `configs/` loads and
//! resolves; the command line overrides the file; virtiofsd's words and
//! the `-o` forms libvirt passes are taken (or refused with a message
//! that says why).

use clap::Parser;
use ext4_virtiofsd::adapter::attr::CachePolicy;
use ext4_virtiofsd::vhost::options::{FileConfig, Listen, ServeArgs, ServeSettings};
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn parse(args: &[&str]) -> Result<ServeSettings, String> {
    let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map_err(|e| e.to_string())?;
    cli.serve.resolve()
}

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("configs")
}

#[test]
fn every_example_config_loads_and_resolves() {
    let mut n = 0;
    for e in std::fs::read_dir(configs()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            FileConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
            let s = parse(&["--config", p.to_str().unwrap()]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(s.image.is_absolute() && matches!(s.listen, Listen::Path(_)), "{}: {s:?}", p.display());
            n += 1;
        }
    }
    assert!(n >= 3, "only {n} example configs");
    let full = parse(&["--config", configs().join("full.toml").to_str().unwrap()]).unwrap();
    assert_eq!((full.tag.as_str(), full.cache, full.threads, full.request_queues), ("ext4fs", CachePolicy::Auto, 4, 1));
    assert_eq!((full.cache_size, full.inode_dax), (0, ext4_virtiofsd::dax::InodeDax::Flag));
    let dax = parse(&["--config", configs().join("full.toml").to_str().unwrap(), "--cache-size", "1G"]).unwrap();
    assert_eq!(dax.cache_size, 1 << 30);
    assert!(parse(&["--image", "/x.img", "--socket-path", "/s", "--cache-size", "3M"]).is_err(), "not 2 MiB ranges");
    let ro = parse(&["--config", configs().join("read-only-shared.toml").to_str().unwrap()]).unwrap();
    assert!(
        ro.read_only && ro.keep_running && ro.cache == CachePolicy::Always && ro.socket_group.as_deref() == Some("kvm")
    );
}

#[test]
fn the_command_line_overrides_the_file_and_unknown_fields_are_refused() {
    let cfg = configs().join("full.toml");
    let s = parse(&[
        "--config",
        cfg.to_str().unwrap(),
        "--tag",
        "other",
        "--cache",
        "never",
        "--num-request-queues",
        "4",
        "--image",
        "/x.img",
    ])
    .unwrap();
    assert_eq!(
        (s.tag.as_str(), s.cache, s.request_queues, s.image.to_str().unwrap()),
        ("other", CachePolicy::Never, 4, "/x.img")
    );
    let dir = std::env::temp_dir().join(format!("serve-opts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "image = \"/a\"\nsocket_path = \"/b\"\nshared_dir = \"/c\"\n").unwrap();
    let e = parse(&["--config", bad.to_str().unwrap()]).unwrap_err();
    assert!(e.contains("shared_dir"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn minimal_command_lines_and_defaults() {
    let s = parse(&["--image", "a.img", "--socket-path", "s.sock"]).unwrap();
    assert_eq!(s.listen, Listen::Path("s.sock".into()));
    assert_eq!(
        (s.tag.as_str(), s.read_only, s.keep_running, s.request_queues, s.cache),
        ("ext4fs", false, false, 1, CachePolicy::Auto)
    );
    assert!(s.threads >= 2);
    assert!(parse(&["--socket-path", "s"]).unwrap_err().contains("no image"));
    assert!(parse(&["--image", "a"]).unwrap_err().contains("no socket"));
    assert!(parse(&["--image", "a", "--socket-path", "s", "--fd", "3"]).unwrap_err().contains("exclude"));
    assert!(parse(&["--image", "a", "--socket-path", "s", "--tag", &"t".repeat(37)]).unwrap_err().contains("longer"));
    assert!(parse(&["--image", "a", "--socket-path", "s", "--num-request-queues", "0"]).is_err());
    assert!(parse(&["--image", "a", "--socket-path", "s", "--log-level", "loud"]).unwrap_err().contains("log level"));
    let s = parse(&[
        "--image",
        "a",
        "--socket-path",
        "s",
        "--read-only",
        "--keep-running",
        "--thread-pool-size",
        "3",
        "--log-level",
        "DEBUG",
    ])
    .unwrap();
    assert!(s.read_only && s.keep_running && s.threads == 3 && s.log_level.as_deref() == Some("debug"));
}

#[test]
fn virtiofsd_and_libvirt_forms() {
    // What libvirt's <filesystem type='mount'><driver type='virtiofs'/>
    // passes a virtiofsd-compatible binary: an inherited socket, -o source,
    // cache, xattr, sandbox and the like.
    let s = parse(&[
        "--fd=3",
        "-o",
        "source=/images/g.img",
        "--cache=always",
        "--xattr",
        "--posix-lock",
        "--sandbox",
        "none",
        "--thread-pool-size=2",
    ])
    .unwrap();
    assert_eq!(
        (s.listen, s.image.to_str().unwrap(), s.cache, s.threads),
        (Listen::Fd(3), "/images/g.img", CachePolicy::Always, 2)
    );
    let s = parse(&[
        "--socket-path=/run/s",
        "-o",
        "source=/i.img,cache=none,xattr,no_flock,posix_lock,sandbox=none",
        "-o",
        "writeback,announce_submounts",
    ])
    .unwrap();
    assert_eq!((s.image.to_str().unwrap(), s.cache, s.writeback), ("/i.img", CachePolicy::Never, true));
    let s =
        parse(&["--socket-path", "/run/s", "--shared-dir", "/i.img", "--socket-group", "kvm", "--log-level", "warn"])
            .unwrap();
    assert_eq!((s.image.to_str().unwrap(), s.socket_group.as_deref()), ("/i.img", Some("kvm")));
    // Refused, each with a reason.
    for (args, why) in [
        (&["--socket-path", "s", "--image", "a", "--sandbox", "chroot"][..], "sandbox"),
        (&["--socket-path", "s", "--image", "a", "-o", "sandbox=namespace"][..], "sandbox"),
        (&["--socket-path", "s", "--image", "a", "-o", "no_xattr"][..], "always served"),
        (&["--socket-path", "s", "--image", "a", "-o", "flock"][..], "flock"),
        (&["--socket-path", "s", "--image", "a", "-o", "cache=metadata"][..], "metadata"),
        (&["--socket-path", "s", "--image", "a", "-o", "frobnicate"][..], "unknown"),
        (&["--socket-path", "s", "--image", "a", "-o", "thread_pool_size=x"][..], "not a number"),
    ] {
        let e = parse(args).unwrap_err();
        assert!(e.contains(why), "{args:?}: {e}");
    }
}
