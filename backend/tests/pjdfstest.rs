//! POSIX conformance of our host mount, judged against the kernel: pjdfstest
//! (the Rust rewrite, crate 0.2, `cargo install`ed by scripts/setup.sh) runs
//! on a kernel loop mount of one fresh ext4 image and on our daemon's mount
//! (`ext4-virtiofsd mount`) of another, with the same configuration, in the
//! same run. The results are compared per test case name; the test shows
//!
//! - ours passes at least as many cases as the kernel (minus the cases no FUSE
//!   mount can run, [`NOT_ON_FUSE`]), and lists every case the kernel passes
//!   and ours does not;
//! - both runs saw the same test cases, and pjdfstest's own summary matches
//!   the per-case lines we parsed;
//! - our image is `e2fsck -fn` clean after unmount, and the daemon exited 0.
//!
//! fuse2fs runs too, as an informational third column when installed.
//! `EXT4_PJDFSTEST_ARGS="--cache never"` passes extra arguments to our daemon.
//! Needs root, /dev/fuse, loop devices, pjdfstest and its dummy users; says
//! `SKIPPED: ...` otherwise.

mod common;

use common::{Fuse2fsMount, HostMount, KernelMount, Scratch};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE_SIZE: &str = "256M";
/// How long one pjdfstest run may take (a normal run takes seconds).
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// The pjdfstest configuration, the same for every side. The features are
/// those Linux ext4 has; `naptime` (the sleep between changes in timestamp
/// tests) suits nanosecond timestamps. The EROFS cases stay off: they remount
/// the file system read-only, which the kernel itself refuses with "busy"
/// while pjdfstest holds files open. `@SECONDARY@` is a directory on another
/// file system, for the EXDEV cases.
const CONFIG: &str = r#"
[features]
secondary_fs = "@SECONDARY@"
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["tests", "tests"]]
"#;

/// Users and groups the configuration names (scripts/setup.sh creates `tests`).
const DUMMY_USERS: &[(&str, &str)] = &[("nobody", "nogroup"), ("tests", "tests")];

/// Cases pjdfstest skips on every FUSE mount whatever the daemon does, with why.
const NOT_ON_FUSE: &[(&str, &str)] = &[(
    "link::link_count_max",
    "glibc's pathconf(_PC_LINK_MAX) answers 127 (\"unknown\") for FUSE's f_type, and pjdfstest skips on 127",
)];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Pass,
    Fail,
    Skip,
    ExpectedFail,
    UnexpectedPass,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "ok",
            Outcome::Fail => "FAILED",
            Outcome::Skip => "skipped",
            Outcome::ExpectedFail => "failed as expected",
            Outcome::UnexpectedPass => "PASSED UNEXPECTEDLY",
        }
    }
}

/// One pjdfstest run: every case's outcome and first lines of detail.
struct Results {
    cases: BTreeMap<String, (Outcome, String)>,
    secs: f64,
}

impl Results {
    fn count(&self, o: Outcome) -> usize {
        self.cases.values().filter(|(x, _)| *x == o).count()
    }

    fn outcome(&self, name: &str) -> Option<Outcome> {
        self.cases.get(name).map(|(o, _)| *o)
    }
}

/// Parses pjdfstest 0.2 output: one line per case, `NAME<padding> STATUS`
/// (STATUS one of ok, FAILED, skipped, "failed as expected", "PASSED
/// UNEXPECTEDLY"), then tab- or space-indented detail lines, and at the end
/// `Summary: F failed, S skipped, P passed, E expected failures, T total`,
/// which must agree with the lines.
fn parse(output: &str) -> Result<BTreeMap<String, (Outcome, String)>, String> {
    const STATUSES: [Outcome; 5] =
        [Outcome::Pass, Outcome::Fail, Outcome::Skip, Outcome::ExpectedFail, Outcome::UnexpectedPass];
    let mut cases: BTreeMap<String, (Outcome, String)> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut summary = None;
    for raw in output.lines() {
        let line = strip_ansi(raw);
        if let Some(rest) = line.strip_prefix("Summary: ") {
            summary = Some(rest.to_string());
            current = None;
            continue;
        }
        let starts_indented = line.starts_with(|c: char| c.is_whitespace());
        if !starts_indented {
            if let Some((name, status)) = line.split_once(' ') {
                if name.contains("::") {
                    let status = status.trim();
                    let Some(o) = STATUSES.iter().find(|o| o.word() == status) else {
                        return Err(format!("unknown status in line {line:?}"));
                    };
                    if cases.insert(name.to_string(), (*o, String::new())).is_some() {
                        return Err(format!("case {name} reported twice"));
                    }
                    current = Some(name.to_string());
                    continue;
                }
            }
        }
        // Detail of the current case: its first three lines before any backtrace.
        if let Some(name) = &current {
            let t = line.trim();
            if t.starts_with("Backtrace:") || t.starts_with("Stack backtrace:") {
                current = None;
            } else if starts_indented && !t.is_empty() {
                let detail = &mut cases.get_mut(name).unwrap().1;
                if detail.matches(" | ").count() < 2 {
                    if !detail.is_empty() {
                        detail.push_str(" | ");
                    }
                    detail.push_str(t);
                }
            }
        }
    }
    let summary = summary.ok_or("no Summary line (did pjdfstest crash?)")?;
    // "0 failed, 13 skipped, 385 passed, 0 expected failures, 398 total"
    let mut numbers = BTreeMap::new();
    for part in summary.split(", ") {
        let (n, what) = part.split_once(' ').ok_or_else(|| format!("bad summary {summary:?}"))?;
        let n: usize = n.parse().map_err(|_| format!("bad summary {summary:?}"))?;
        numbers.insert(what.to_string(), n);
    }
    let count = |o: Outcome| cases.values().filter(|(x, _)| *x == o).count();
    let expect = [
        ("failed", count(Outcome::Fail) + count(Outcome::UnexpectedPass)),
        ("skipped", count(Outcome::Skip)),
        ("passed", count(Outcome::Pass)),
        ("expected failures", count(Outcome::ExpectedFail)),
        ("total", cases.len()),
    ];
    for (what, n) in expect {
        if numbers.get(what) != Some(&n) {
            return Err(format!("summary {summary:?} disagrees with the {n} {what} case lines parsed"));
        }
    }
    Ok(cases)
}

/// Removes ANSI colour escapes (pjdfstest is run with NO_COLOR, but be sure).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs pjdfstest on `dir` with `config`, keeping its output in `log`.
fn run_pjdfstest(pjdfstest: &Path, config: &Path, dir: &Path, log: &Path) -> Result<Results, String> {
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut child = Command::new(pjdfstest)
        .arg("-c")
        .arg(config)
        .arg("-p")
        .arg(dir)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", pjdfstest.display()))?;
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("pjdfstest on {} did not finish within {RUN_TIMEOUT:?}", dir.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = start.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(log).map_err(|e| e.to_string())?;
    let cases = parse(&text).map_err(|e| format!("{e}; last output:\n{}", tail(&text, 30)))?;
    Ok(Results { cases, secs })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Why this machine cannot run the comparison, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if let Err(e) = common::fuse_usable() {
        return Some(e);
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no loop devices (/dev/loop-control) for the kernel side".into());
    }
    if common::find_program("pjdfstest").is_none() {
        return Some("pjdfstest is not installed (scripts/setup.sh installs it)".into());
    }
    for (user, group) in DUMMY_USERS {
        for (db, name) in [("passwd", user), ("group", group)] {
            let ok = Command::new("getent").arg(db).arg(name).output().is_ok_and(|o| o.status.success());
            if !ok {
                return Some(format!("pjdfstest's dummy {db} entry {name} is missing (scripts/setup.sh creates it)"));
            }
        }
    }
    None
}

#[test]
fn pjdfstest_ours_vs_kernel() {
    const WHAT: &str = "pjdfstest: ours vs kernel";
    if let Some(why) = missing_prerequisite() {
        common::skip(WHAT, &why);
        return;
    }
    let pjdfstest = common::find_program("pjdfstest").unwrap();
    let version = common::run(Command::new(&pjdfstest).arg("--version"));
    assert!(version.starts_with("pjdfstest 0.2."), "expected pjdfstest 0.2.x, found {version:?}");

    let s = Scratch::new("pjd");
    // pjdfstest binds Unix sockets at MOUNT/.tmpXXXXXX/.tmpXXXXXX/<32 chars>/test
    // and sun_path holds 107 bytes: longer mount points fail socket cases.
    assert!(
        s.join("k").as_os_str().len() <= 46,
        "mount points {:?} too long for pjdfstest's sockets: set TMPDIR shorter",
        s.join("k")
    );
    let secondary = s.join("secondary");
    std::fs::create_dir_all(&secondary).unwrap();
    let config = s.join("pjdfstest.toml");
    std::fs::write(&config, CONFIG.replace("@SECONDARY@", secondary.to_str().unwrap())).unwrap();

    // Kernel.
    let kimg = s.join("kernel.img");
    common::mkfs(&kimg, IMAGE_SIZE, &["-t", "ext4"]);
    let Some(km) = KernelMount::or_skip(&kimg, &s.join("k"), "", WHAT) else { return };
    let kernel = run_pjdfstest(&pjdfstest, &config, km.path(), &s.join("kernel.log"));
    km.unmount().expect("unmount the kernel side");
    let kernel = kernel.unwrap_or_else(|e| panic!("pjdfstest on the kernel mount: {e}"));

    // Ours.
    let oimg = s.join("ours.img");
    common::mkfs(&oimg, IMAGE_SIZE, &["-t", "ext4"]);
    let extra = std::env::var("EXT4_PJDFSTEST_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let om = HostMount::new(&oimg, &s.join("o"), &extra).unwrap_or_else(|e| panic!("mount ours: {e}"));
    let ours = run_pjdfstest(&pjdfstest, &config, om.path(), &s.join("ours.log"));
    let unmounted = om.unmount();

    // fuse2fs, for information only.
    let fuse2fs = common::have_program("fuse2fs").then(|| {
        let fimg = s.join("fuse2fs.img");
        common::mkfs(&fimg, IMAGE_SIZE, &["-t", "ext4"]);
        let m = Fuse2fsMount::new(&fimg, &s.join("f"), "")?;
        let r = run_pjdfstest(&pjdfstest, &config, m.path(), &s.join("fuse2fs.log"));
        m.unmount()?;
        r
    });

    let ours = ours.unwrap_or_else(|e| panic!("pjdfstest on our mount: {e}\n(unmount: {unmounted:?})"));
    if let Err(e) = &unmounted {
        panic!("our daemon did not unmount cleanly: {e}");
    }
    let fuse2fs = match fuse2fs {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            println!("fuse2fs column unavailable: {e}");
            None
        }
        None => None,
    };

    // Report.
    let version = version.trim();
    println!("\n{version} (naptime 0.01 s), {} test cases; our daemon args {extra:?}", kernel.cases.len());
    let mut cols: Vec<(&str, &Results)> = vec![("kernel", &kernel), ("ours", &ours)];
    if let Some(f) = &fuse2fs {
        cols.push(("fuse2fs", f));
    }
    print!("{:<22}", "");
    for (name, _) in &cols {
        print!("{name:>10}");
    }
    println!();
    for o in [Outcome::Pass, Outcome::Fail, Outcome::Skip, Outcome::ExpectedFail, Outcome::UnexpectedPass] {
        print!("{:<22}", o.word());
        for (_, r) in &cols {
            print!("{:>10}", r.count(o));
        }
        println!();
    }
    print!("{:<22}", "total");
    for (_, r) in &cols {
        print!("{:>10}", r.cases.len());
    }
    println!();
    print!("{:<22}", "run time (s)");
    for (_, r) in &cols {
        print!("{:>10.1}", r.secs);
    }
    println!();

    let list = |title: &str, pick: &dyn Fn(Option<Outcome>, Option<Outcome>) -> bool, detail_from: &Results| {
        let names: Vec<&String> = kernel.cases.keys().filter(|n| pick(kernel.outcome(n), ours.outcome(n))).collect();
        println!("\n{title}: {}", names.len());
        for n in names {
            let not_on_fuse = NOT_ON_FUSE.iter().any(|(x, _)| x == n);
            println!(
                "  {n:<60} kernel {:<8} ours {:<8} {}{}",
                kernel.outcome(n).map_or("-", Outcome::word),
                ours.outcome(n).map_or("-", Outcome::word),
                if not_on_fuse { "(cannot run on FUSE) " } else { "" },
                detail_from.cases.get(n.as_str()).map_or("", |(_, d)| d.as_str())
            );
        }
    };
    let pass = Some(Outcome::Pass);
    list("Kernel passes, ours does not", &|k, o| k == pass && o != pass, &ours);
    list("Ours passes, kernel does not", &|k, o| k != pass && o == pass, &kernel);
    list("Kernel does not pass here (its own failures and skips)", &|k, _| k != pass, &kernel);

    // Verdict.
    let kernel_names: Vec<&String> = kernel.cases.keys().collect();
    let our_names: Vec<&String> = ours.cases.keys().collect();
    assert_eq!(kernel_names, our_names, "the two pjdfstest runs saw different test cases");
    let excused: Vec<&str> = NOT_ON_FUSE
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| kernel.outcome(n) == pass && ours.outcome(n) == Some(Outcome::Skip))
        .collect();
    for (n, why) in NOT_ON_FUSE.iter().filter(|(n, _)| excused.contains(n)) {
        println!("not counted against ours: {n}: {why}");
    }
    let bar = kernel.count(Outcome::Pass) - excused.len();
    let ours_pass = ours.count(Outcome::Pass);
    println!(
        "\nSUMMARY pjdfstest: kernel {}/{} passed, ours {ours_pass}/{} passed (bar {bar}){}",
        kernel.count(Outcome::Pass),
        kernel.cases.len(),
        ours.cases.len(),
        fuse2fs.as_ref().map_or(String::new(), |f| format!(", fuse2fs {}/{}", f.count(Outcome::Pass), f.cases.len()))
    );
    common::assert_fsck_clean(&oimg);
    let missed: Vec<&String> = kernel
        .cases
        .keys()
        .filter(|n| kernel.outcome(n) == pass && ours.outcome(n) != pass && !excused.contains(&n.as_str()))
        .collect();
    assert!(missed.is_empty(), "cases the kernel passes and ours does not: {missed:?}");
    assert!(
        ours_pass >= bar,
        "ours passes {ours_pass} pjdfstest cases, the kernel {bar} (not counting {excused:?}); see the lists above"
    );
}

#[test]
fn parser_reads_pjdfstest_output() {
    // A sample in pjdfstest 0.2's format, colours included.
    let sample = "\x1b[34mchmod::update_ctime::fifo\x1b[0m                                                 \x1b[31mFAILED\x1b[0m\n\
        \tTimestamps did not change as expected\n\
        Backtrace:\n   0: pjdfstest::main\n\
        unlink::erofs_named                                                      skipped\n\
        \tRemounts (allow_remount) are not allowed in the configuration file\n\
        rename::enametoolong_component                                            FAILED\n\
        \tassertion `left == right` failed\n  left: Err(ENOENT)\n right: Err(ENAMETOOLONG)\n\
        utimensat::y2038                                              failed as expected\n\
        chown::eloop_final_comp                                                       ok\n\
        \n\x1b[32mSummary\x1b[0m: 2 failed, 1 skipped, 1 passed, 1 expected failures, 5 total\n";
    let cases = parse(sample).unwrap();
    assert_eq!(cases.len(), 5);
    assert_eq!(cases["chmod::update_ctime::fifo"], (Outcome::Fail, "Timestamps did not change as expected".into()));
    assert_eq!(cases["unlink::erofs_named"].0, Outcome::Skip);
    assert_eq!(
        cases["rename::enametoolong_component"].1,
        "assertion `left == right` failed | left: Err(ENOENT) | right: Err(ENAMETOOLONG)"
    );
    assert_eq!(cases["utimensat::y2038"].0, Outcome::ExpectedFail);
    assert_eq!(cases["chown::eloop_final_comp"].0, Outcome::Pass);
    // A summary that disagrees with the lines, or none at all, is an error.
    assert!(parse(&sample.replace("1 passed", "2 passed")).is_err());
    assert!(parse(&sample[..sample.find("Summary").unwrap() - 6]).is_err());
}
