//! The real-guest rig, proven with a peer daemon: QEMU 7.2 (TCG) boots the
//! Debian cloud kernel against the C virtiofsd that bookworm's QEMU ships,
//! serving a plain host directory; the guest program's cases must all pass
//! and the files it leaves must be on the host, read directly and through
//! an ext4 image built from the directory (`mke2fs -d`, read by debugfs).
//! A second boot shows that a failing case is reported and does not stop
//! the others.

use std::path::PathBuf;

use testkit::{Scratch, skip};
use vmtests::leftovers::{self, HostDir, ImageView};
use vmtests::rig::{self, CaseOutcome, GuestRun};

/// The peer daemon, or `None` after a loud skip.
fn peer(what: &str) -> Option<PathBuf> {
    if !testkit::is_root() {
        skip(what, "QEMU's C virtiofsd needs root (it switches credentials and chroots)");
        return None;
    }
    let bin = rig::qemu_virtiofsd();
    if bin.is_none() {
        skip(
            what,
            "no /usr/lib/qemu/virtiofsd or /usr/libexec/virtiofsd (Debian qemu-system-common 7.2 ships the first)",
        );
    }
    bin
}

#[test]
fn every_guest_case_passes_on_qemu_virtiofsd() {
    let what = "guest_rig: guest cases over QEMU's virtiofsd";
    let Some(prep) = rig::prepared_or_skip(what) else { return };
    let Some(bin) = peer(what) else { return };
    eprintln!("vmrig: kernel {}, peer {}", prep.kernel_package, bin.display());
    let s = Scratch::new("vmrig");
    let share = s.join("share");
    std::fs::create_dir(&share).unwrap();
    let socket = s.join("vhost.sock");
    let run = GuestRun::new(&s.join("logs"));
    let result = rig::run_guest(&prep, rig::qemu_virtiofsd_command(&bin, &share, &socket), &socket, &run);
    result.assert_all_passed();
    assert_eq!(result.plan.len(), 10, "the guest planned {:?}", result.plan);

    let bad = leftovers::check(&HostDir(share.clone()));
    assert!(bad.is_empty(), "the files the guest left in {} are wrong:\n{}", share.display(), bad.join("\n"));

    // The same checks through an ext4 image of the directory: proves the
    // image reader the ext4 run will use.
    let image = s.join("share.img");
    leftovers::image_from_dir(&share, &image, 256);
    let bad = leftovers::check(&ImageView(image.clone()));
    assert!(bad.is_empty(), "the image built from the share disagrees:\n{}", bad.join("\n"));
}

#[test]
fn a_failing_case_is_reported_and_the_others_still_run() {
    let what = "guest_rig: failing case";
    let Some(prep) = rig::prepared_or_skip(what) else { return };
    let Some(bin) = peer(what) else { return };
    let s = Scratch::new("vmfail");
    let share = s.join("share");
    std::fs::create_dir(&share).unwrap();
    let socket = s.join("vhost.sock");
    // The same daemon without `-o xattr`: the guest's setxattr fails.
    let mut daemon = std::process::Command::new(&bin);
    daemon.arg(format!("--socket-path={}", socket.display())).args(["-o", &format!("source={}", share.display())]);
    daemon.args(["-o", "cache=auto", "-o", "sandbox=chroot"]);
    let mut run = GuestRun::new(&s.join("logs"));
    run.cases = Some(vec!["xattr".into(), "symlink".into()]);
    let result = rig::run_guest(&prep, daemon, &socket, &run);
    assert_eq!(result.plan, ["xattr", "symlink"], "console:\n{}", result.boot.console);
    assert!(
        matches!(&result.cases[..], [(x, CaseOutcome::Fail(why)), (l, CaseOutcome::Pass)] if x == "xattr" && l == "symlink" && why.contains("user.a")),
        "expected xattr to fail and symlink to pass: {:?}\n{}",
        result.cases,
        result.boot.console
    );
    assert_eq!(result.done, Some((1, 1)));
    let problems = result.problems();
    assert!(problems.len() == 1 && problems[0].contains("case xattr FAILED"), "{problems:?}");
}

#[test]
fn the_hang_guard_ends_a_boot_that_runs_too_long() {
    let what = "guest_rig: hang guard";
    let Some(prep) = rig::prepared_or_skip(what) else { return };
    let Some(bin) = peer(what) else { return };
    let s = Scratch::new("vmhang");
    let share = s.join("share");
    std::fs::create_dir(&share).unwrap();
    let socket = s.join("vhost.sock");
    let mut run = GuestRun::new(&s.join("logs"));
    // A guest needs seconds to boot; one second cannot be enough.
    run.timeout = std::time::Duration::from_secs(1);
    let result = rig::run_guest(&prep, rig::qemu_virtiofsd_command(&bin, &share, &socket), &socket, &run);
    assert!(result.boot.timed_out && result.boot.status.is_none(), "{:?}", result.boot);
    let problems = result.problems();
    assert!(problems.iter().any(|p| p.contains("hang guard")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("no VMTEST DONE")), "{problems:?}");
    assert!(result.daemon_status.is_some(), "the daemon was not stopped");
}
