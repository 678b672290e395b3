//! Benchmark of orphans at scale (issue 13), side by side in one run: our
//! ext4 core called directly, our host mount (`ext4-virtiofsd mount`, the
//! same core behind /dev/fuse) and the kernel's ext4 on a loop mount of the
//! same kind of image. 50 000 files are created and held open (through a
//! mount by four helper processes, 12 500 files each), unlinked while open
//! (each becomes an orphan), then closed (each orphan is released), ending
//! durable (the core's `sync`; through a mount, the last close and then
//! `sync -f` — syncfs, which our daemon answers with a commit and
//! checkpoint). On a classic image (orphan list only) and on an
//! `orphan_file` image (mke2fs 1.47, 4 GiB: 256 blocks, room for every
//! orphan).
//!
//! Prints times and ratios; asserts nothing. Run (as root) with
//! `cargo bench -p ext4-virtiofsd --bench orphans`. The mount columns need
//! root, /dev/fuse and loop devices; without them they are reported as
//! skipped.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{HostMount, KernelMount, Scratch, run};
use ext4::fs::dir::namespace::NewInode;
use ext4::{Ext4, OpenOptions, ROOT_INO};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FILES: usize = 50_000;

/// Times of the three phases: create + open, unlink, close (+ sync).
type Phases = [Duration; 3];

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn ours(img: &Path) -> Phases {
    let fs = Ext4::open(img, &OpenOptions::default()).unwrap();
    let new = |mode| NewInode { mode, uid: 0, gid: 0, rdev: 0, umask: None };
    let dir = fs.mkdir(ROOT_INO, b"d", new(0o40755)).unwrap().ino;
    let names: Vec<String> = (0..FILES).map(|i| format!("f{i}")).collect();
    let mut inos = Vec::with_capacity(FILES);
    let create = timed(|| {
        for n in &names {
            let ino = fs.create(dir, n.as_bytes(), new(0o100644)).unwrap().ino;
            fs.open_inode(ino);
            inos.push(ino);
        }
    });
    let unlink = timed(|| {
        for n in &names {
            fs.unlink(dir, n.as_bytes()).unwrap();
        }
    });
    let (in_file, on_list) = fs.orphan_records();
    eprintln!("ours: {in_file} orphans in the orphan file, {on_list} on the classic list");
    let close = timed(|| {
        for &ino in &inos {
            fs.close_inode(ino).unwrap();
        }
        fs.sync().unwrap();
    });
    fs.close().unwrap();
    [create, unlink, close]
}

/// Files each helper process holds open (below the usual 20 000 limit on
/// open files, which a container's root may not raise).
const PER_HELPER: usize = 12_500;

/// Through a mount: helper processes (this program again) each create and
/// hold open `PER_HELPER` files, unlink them on a command, and close them
/// by exiting; the parent times each phase across all of them.
fn through_mount(mnt: &Path) -> Phases {
    use std::io::{BufRead, BufReader, Write};
    let dir = mnt.join("d");
    std::fs::create_dir(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut helpers = Vec::new();
    let step = |helpers: &mut Vec<(std::process::Child, BufReader<std::process::ChildStdout>)>, cmd: Option<&str>| {
        for (child, _) in helpers.iter_mut() {
            if let Some(cmd) = cmd {
                writeln!(child.stdin.as_mut().unwrap(), "{cmd}").unwrap();
            }
        }
        for (_, out) in helpers.iter_mut() {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ok", "helper failed");
        }
    };
    let create = timed(|| {
        for start in (0..FILES).step_by(PER_HELPER) {
            let mut child = Command::new(&exe)
                .env(HELPER_ENV, format!("{start},{},{}", (start + PER_HELPER).min(FILES), dir.display()))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let out = BufReader::new(child.stdout.take().unwrap());
            helpers.push((child, out));
        }
        step(&mut helpers, None);
    });
    let unlink = timed(|| step(&mut helpers, Some("unlink")));
    let close = timed(|| {
        for (mut child, _) in helpers.drain(..) {
            drop(child.stdin.take());
            assert!(child.wait().unwrap().success());
        }
        run(Command::new("sync").arg("-f").arg(mnt));
    });
    [create, unlink, close]
}

const HELPER_ENV: &str = "EXT4_ORPHANS_BENCH_HELPER";

/// Helper mode: `start,end,dir` — create and hold open `dir/f{start..end}`,
/// say "ok"; on "unlink" unlink them and say "ok"; exit (closing them all)
/// when the parent closes our stdin.
fn helper(spec: &str) {
    use std::io::{BufRead, Write};
    let mut parts = spec.splitn(3, ',');
    let start: usize = parts.next().unwrap().parse().unwrap();
    let end: usize = parts.next().unwrap().parse().unwrap();
    let dir = Path::new(parts.next().unwrap());
    let paths: Vec<_> = (start..end).map(|i| dir.join(format!("f{i}"))).collect();
    let files: Vec<_> = paths.iter().map(|p| std::fs::File::create(p).unwrap()).collect();
    let mut out = std::io::stdout();
    writeln!(out, "ok").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        if line.unwrap() == "unlink" {
            for p in &paths {
                std::fs::remove_file(p).unwrap();
            }
            writeln!(out, "ok").unwrap();
            out.flush().unwrap();
        }
    }
    drop(files);
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn main() {
    if let Ok(spec) = std::env::var(HELPER_ENV) {
        return helper(&spec);
    }
    let scratch = Scratch::new("bench-orphans");
    let kinds: [(&str, &[&str]); 2] = [
        ("classic list", &["-t", "ext4", "-b", "4096", "-N", "120000", "-O", "^orphan_file"]),
        ("orphan file", &["-t", "ext4", "-b", "4096", "-N", "120000", "-O", "orphan_file"]),
    ];
    println!("{FILES} files: create + hold open, unlink while open, close (ending with sync)\n");
    println!("| image | phase | ours (core) | ours (host mount) | kernel | core / kernel | host mount / kernel |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (kind, args) in kinds {
        let ours_img = scratch.join("ours.img");
        let host_img = scratch.join("host.img");
        let kernel_img = scratch.join("kernel.img");
        for img in [&ours_img, &host_img, &kernel_img] {
            common::mkfs(img, "4G", args);
        }
        let o = ours(&ours_img);
        let mnt = scratch.join("mnt");
        let h = if HostMount::usable_or_skip("host-mount column of the orphans benchmark") {
            let m = HostMount::new(&host_img, &mnt, &[]).unwrap();
            let h = through_mount(&mnt);
            m.unmount().unwrap();
            Some(h)
        } else {
            None
        };
        let k = KernelMount::or_skip(&kernel_img, &mnt, "", "kernel column of the orphans benchmark").map(|m| {
            let k = through_mount(m.path());
            m.unmount().unwrap();
            k
        });
        let cell = |v: &Option<Phases>, i: usize| v.as_ref().map_or("skipped".to_string(), |v| ms(v[i]));
        let ratio = |a: Duration, v: &Option<Phases>, i: usize| {
            v.as_ref().map_or(String::new(), |v| format!("{:.2}x", a.as_secs_f64() / v[i].as_secs_f64()))
        };
        for (i, phase) in ["create + open", "unlink (orphan)", "close (release) + sync"].iter().enumerate() {
            let host = h.as_ref().map(|h| h[i]);
            println!(
                "| {kind} | {phase} | {} | {} | {} | {} | {} |",
                ms(o[i]),
                cell(&h, i),
                cell(&k, i),
                ratio(o[i], &k, i),
                host.map_or(String::new(), |x| ratio(x, &k, i)),
            );
        }
        for img in [&ours_img, &host_img, &kernel_img] {
            let _ = std::fs::remove_file(img);
        }
    }
}
