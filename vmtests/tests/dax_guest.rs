//! The mmap cases in real guests, with and without the DAX window: one boot
//! per configuration runs every `map_*` case on an image the host prepared
//! (`vmtests::mapfiles`: inline, plain, sparse, multi-extent and 16 MiB
//! files):
//!
//! - QEMU 7.2, no DAX (the page cache serves the mappings);
//! - QEMU 11 with a 32 MiB window (`--cache-size 32M`), mounted
//!   `-o dax=always`;
//! - QEMU 11 with a 32 MiB window and `--inode-dax flag`, mounted
//!   `-o dax=inode`, the DAX inode flag set on some files.
//!
//! The DAX runs must show that DAX was used: the guest's /proc/mounts has
//! the `dax=` option, its dmesg the window (`Cache len`), `statx` the DAX
//! attribute on the expected files, and the daemon's counters line
//! SETUPMAPPINGs, REMOVEMAPPINGs (the 96 MiB of mapped files do not fit
//! the window) and inline conversions. Afterwards the image is fsck-clean,
//! every prepared file holds its bytes, and the inline file written through
//! its mapping holds the new bytes (converted to an extent under DAX).
//!
//! Also: a read-only image under DAX (nothing converted, image unchanged)
//! and the demo's code path.

use testkit::Scratch;
use vmtests::mapfiles;
use vmtests::rig::{self, GuestRun, RunResult};

/// The mmap cases, in the order they run.
const MAP_CASES: &[&str] = &[
    "map_dax_attr",
    "map_inline",
    "map_sizes",
    "map_sparse_extents",
    "map_grow",
    "map_coherence",
    "map_truncate",
    "map_reclaim",
    "map_eof_tail",
    "map_hole_store",
];

/// How a configuration boots and mounts.
struct Config {
    name: &'static str,
    qemu11: bool,
    serve_args: &'static [&'static str],
    mount_opts: Option<&'static str>,
    dax_flags: bool,
}

/// The daemon's `dax counters: setupmappings=N ...` as (name, value).
fn dax_counters(log: &str) -> Option<Vec<(String, u64)>> {
    let line = log.lines().rev().find(|l| l.contains("dax counters:"))?;
    let rest = &line[line.find("dax counters:")? + "dax counters:".len()..];
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok().map(|v| (k.into(), v)))
            .collect(),
    )
}

fn counter(counters: &[(String, u64)], name: &str) -> u64 {
    counters.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}

/// Boots one configuration and checks everything; returns the run.
fn run_config(c: &Config) -> Option<RunResult> {
    let what = format!("dax_guest {}", c.name);
    let (prep, q11) = rig::guest_or_skip(&what, c.qemu11)?;
    let bin = rig::daemon_binary();
    let s = Scratch::new("vmdax");
    let image = s.join("map.img");
    mapfiles::build(&image, &s.path, 384, c.dax_flags);
    let mut run = GuestRun::new(&s.join("logs"));
    run.qemu11 = q11;
    run.serve_args = c.serve_args.iter().map(|a| a.to_string()).collect();
    run.mount_opts = c.mount_opts.map(String::from);
    run.cases = Some(MAP_CASES.iter().map(|c| c.to_string()).collect());
    let result = rig::run_ext4_image(&prep, &bin, &image, &run);
    result.assert_all_passed();
    assert_eq!(result.plan, MAP_CASES, "the guest planned {:?}", result.plan);
    result.assert_daemon_exited_by_itself();
    testkit::assert_fsck_clean(&image);
    let dax = c.mount_opts.is_some();
    let bad = mapfiles::check_after(&image, dax);
    assert!(
        bad.is_empty(),
        "{}: the image after the run:\n{}\ndaemon log:\n{}",
        c.name,
        bad.join("\n"),
        result.daemon_log
    );

    let mounts = result.rig_lines("mounts");
    let dmesg = result.rig_lines("dmesg");
    let info = result.info_lines();
    let counters = dax_counters(&result.daemon_log);
    eprintln!(
        "dax_guest {}: mounts {mounts:?}; dmesg {dmesg:?}; {info:?}; daemon counters {counters:?}; inline_rw after the run:\n{}",
        c.name,
        mapfiles::describe(&image, "pre/inline_rw")
    );
    let mode = c.mount_opts.and_then(|o| o.strip_prefix("dax=")).unwrap_or("none");
    assert!(info.iter().any(|l| *l == format!("map_dax_attr mode {mode}")), "the guest saw another DAX mode: {info:?}");
    if dax {
        let opt = c.mount_opts.unwrap();
        assert!(mounts.iter().any(|m| m.contains(opt)), "/proc/mounts in the guest lacks {opt}: {mounts:?}");
        assert!(dmesg.iter().any(|l| l.contains("Cache len")), "the guest's dmesg shows no DAX window: {dmesg:?}");
        let counters =
            counters.unwrap_or_else(|| panic!("no dax counters line in the daemon's log:\n{}", result.daemon_log));
        for name in ["setupmappings", "removemappings", "conversions"] {
            assert!(counter(&counters, name) > 0, "{}: the daemon counted no {name}: {counters:?}", c.name);
        }
        assert!(
            result.daemon_log.contains("converted from inline data at map setup"),
            "no conversion line in the daemon's log"
        );
    } else {
        assert!(dmesg.iter().all(|l| !l.contains("Cache len")), "a window where none was offered: {dmesg:?}");
        if let Some(c) = counters {
            assert_eq!(counter(&c, "setupmappings"), 0, "SETUPMAPPINGs without a window: {c:?}");
        }
    }
    Some(result)
}

#[test]
fn mmap_cases_under_qemu7_without_dax() {
    run_config(&Config { name: "qemu7", qemu11: false, serve_args: &[], mount_opts: None, dax_flags: false });
}

#[test]
fn mmap_cases_under_qemu11_dax_always() {
    run_config(&Config {
        name: "qemu11 dax=always",
        qemu11: true,
        serve_args: &["--cache-size", "32M"],
        mount_opts: Some("dax=always"),
        dax_flags: false,
    });
}

#[test]
fn mmap_cases_under_qemu11_dax_inode() {
    let r = run_config(&Config {
        name: "qemu11 dax=inode",
        qemu11: true,
        serve_args: &["--cache-size", "32M", "--inode-dax", "flag"],
        mount_opts: Some("dax=inode"),
        dax_flags: true,
    });
    if let Some(r) = r {
        let flagged = vmtests::pattern::pre_files().iter().filter(|f| f.dax_flag).count();
        let want = format!("map_dax_attr dax_files {flagged}");
        assert!(r.info_lines().contains(&want), "expected {want}: {:?}", r.info_lines());
    }
}

/// The demo's code path (`cargo run --release -p vmtests --bin demo`): an
/// inline file mapped through DAX in a QEMU 11 guest, converted at map
/// setup, fsck-clean afterwards.
#[test]
fn the_demo_runs() {
    let bin = rig::daemon_binary();
    match vmtests::demo::run(&bin, &mut std::io::stderr()) {
        Ok(outcome) => assert!(outcome.ok(), "the demo failed: {outcome:?}"),
        Err(why) => testkit::skip("dax_guest: the demo", &why),
    }
}

/// A hash of a file's bytes (to show an image was not written).
fn file_hash(p: &std::path::Path) -> u64 {
    use std::hash::Hasher;
    use std::io::Read;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut f = std::fs::File::open(p).expect("open image");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read image");
        if n == 0 {
            return h.finish();
        }
        h.write(&buf[..n]);
    }
}

/// A read-only image (`serve --read-only --cache-size 32M`) under QEMU 11
/// mounted `-o dax=always`: the prepared files (inline ones included) read
/// right through read-only DAX mappings, writable opens are EROFS, the
/// daemon sets up mappings but converts nothing, and the image file is
/// byte-for-byte unchanged (inline files still inline), fsck clean.
#[test]
fn mmap_of_a_read_only_image_under_dax() {
    let what = "dax_guest read-only image";
    let Some(prep) = rig::prepared_or_skip(what) else { return };
    let Some(q11) = rig::qemu11_or_skip(what, &prep) else { return };
    let bin = rig::daemon_binary();
    let s = Scratch::new("vmdaxro");
    let image = s.join("map.img");
    mapfiles::build(&image, &s.path, 384, false);
    let before = file_hash(&image);
    let mut run = GuestRun::new(&s.join("logs"));
    run.qemu11 = Some(q11);
    run.serve_args = ["--cache-size", "32M", "--read-only"].iter().map(|a| a.to_string()).collect();
    run.mount_opts = Some("dax=always".into());
    run.cases = Some(vec!["map_read_only_image".into()]);
    let result = rig::run_ext4_image(&prep, &bin, &image, &run);
    result.assert_all_passed();
    let counters = dax_counters(&result.daemon_log);
    eprintln!("dax_guest read-only: {:?}; daemon counters {counters:?}", result.rig_lines("dmesg"));
    let counters = counters.unwrap_or_else(|| panic!("no dax counters line:\n{}", result.daemon_log));
    assert!(counter(&counters, "setupmappings") > 0, "no SETUPMAPPING: {counters:?}");
    assert_eq!(counter(&counters, "conversions"), 0, "a conversion on a read-only image: {counters:?}");
    assert_eq!(file_hash(&image), before, "the read-only image changed");
    let flags = mapfiles::inode_flags(&image, "pre/inline60");
    assert!(flags & 0x1000_0000 != 0, "pre/inline60 is no longer inline: {flags:#x}");
    testkit::assert_fsck_clean(&image);
}
