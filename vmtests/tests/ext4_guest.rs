//! Real guests on our daemon: the Debian cloud kernel boots under QEMU 7.2
//! (TCG, `vhost-user-fs-pci`) and under QEMU 11 from a sid chroot
//! (`vhost-user-test-device-pci`, virtio-id 26, no DAX window here)
//! against `ext4-virtiofsd serve` on a fresh ext4 image (inline_data on);
//! every guest case must pass, the daemon must exit by itself when QEMU
//! goes (image closed clean), the files the guest left must be in the
//! image, and e2fsck must find nothing wrong.

use std::process::Command;

use testkit::Scratch;
use vmtests::leftovers::{self, ImageView, ShareView};
use vmtests::rig::{self, GuestRun};

/// One boot running every guest case on a fresh image, then the host checks.
fn every_case(what: &str, qemu11: bool) {
    let Some((prep, q11)) = rig::guest_or_skip(what, qemu11) else { return };
    let bin = rig::daemon_binary();
    let s = Scratch::new("vmext4");
    let image = s.join("guest.img");
    rig::fresh_guest_image(&image);
    let mut run = GuestRun::new(&s.join("logs"));
    run.qemu11 = q11;
    let result = rig::run_ext4_image(&prep, &bin, &image, &run);
    result.assert_all_passed();
    assert_eq!(result.plan.len(), 10, "the guest planned {:?}", result.plan);
    result.assert_daemon_exited_by_itself();
    testkit::assert_fsck_clean(&image);
    let bad = leftovers::check(&ImageView(image.clone()));
    assert!(
        bad.is_empty(),
        "the files the guest left in the image are wrong:\n{}\ndaemon log:\n{}",
        bad.join("\n"),
        result.daemon_log
    );
}

#[test]
fn every_guest_case_passes_on_ext4_virtiofsd() {
    every_case("ext4_guest: guest cases over ext4-virtiofsd serve (QEMU 7.2)", false);
}

#[test]
fn every_guest_case_passes_under_qemu11() {
    every_case("ext4_guest: guest cases over ext4-virtiofsd serve (QEMU 11, sid chroot)", true);
}

/// The synced files a crash run's console announced: (index, name, length).
fn synced_markers(console: &str) -> Vec<(usize, String, usize)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("VMCRASH synced ")? + "VMCRASH synced ".len()..];
            let (name, len) = rest.trim().split_once(' ')?;
            let i = name.strip_prefix("synced")?.parse().ok()?;
            Some((i, name.to_string(), len.trim().parse().ok()?))
        })
        .collect()
}

/// Acceptance 4: a guest writing and fsyncing files is killed mid-workload
/// (the daemon gets SIGKILL first, then QEMU, once the console shows 30
/// fsync markers: every marker was answered by the daemon before it died).
/// The daemon restarted on the image (journal replay) serves a second
/// guest (QEMU 7.2) that reads every file back; then the image is
/// fsck-clean and every file the guest announced as synced holds its exact
/// bytes. With `dax`, the workload runs under QEMU 11 mounted
/// `-o dax=always` (`--cache-size 64M`): its non-extending writes and
/// mapped stores go through the window.
fn crash_and_recover(what: &str, dax: bool) {
    let Some((prep, q11)) = rig::guest_or_skip(what, dax) else { return };
    let bin = rig::daemon_binary();
    let s = Scratch::new("vmcrash");
    let image = s.join("guest.img");
    rig::fresh_guest_image(&image);
    let mut run = GuestRun::new(&s.join("logs-crash"));
    run.cases = Some(vec!["crash_workload".into()]);
    const MARKERS: usize = 30;
    run.kill_at = Some(("VMCRASH synced".into(), MARKERS));
    if dax {
        run.qemu11 = q11;
        run.serve_args = vec!["--cache-size".into(), "64M".into()];
        run.mount_opts = Some("dax=always".into());
    }
    let crashed = rig::run_ext4_image(&prep, &bin, &image, &run);
    assert!(
        crashed.boot.killed,
        "the workload ended before {MARKERS} fsync markers:\n{}\n--- daemon ---\n{}",
        crashed.boot.console, crashed.daemon_log
    );
    if dax {
        let mounts = crashed.rig_lines("mounts");
        assert!(mounts.iter().any(|m| m.contains("dax=always")), "not a DAX mount: {mounts:?}");
    }
    let synced = synced_markers(&crashed.boot.console);
    assert!(synced.len() >= MARKERS, "{} markers parsed", synced.len());
    let features = testkit::run(Command::new("dumpe2fs").arg("-h").arg(&image));
    let needs_recovery = features.lines().any(|l| l.starts_with("Filesystem features") && l.contains("needs_recovery"));
    eprintln!(
        "crash: {} files announced synced, daemon {:?}, image needs_recovery: {needs_recovery}",
        synced.len(),
        crashed.daemon_status
    );

    let mut run = GuestRun::new(&s.join("logs-recovered"));
    run.cases = Some(vec!["crash_check".into()]);
    let recovered = rig::run_ext4_image(&prep, &bin, &image, &run);
    recovered.assert_all_passed();
    recovered.assert_daemon_exited_by_itself();
    eprintln!("crash: after recovery the guest reports {:?}", recovered.info_lines());
    testkit::assert_fsck_clean(&image);
    let view = ImageView(image.clone());
    let mut bad = Vec::new();
    for (i, name, len) in &synced {
        let want = vmtests::pattern::pattern(vmtests::pattern::crash_file_seed(*i), *len);
        assert_eq!(*len, vmtests::pattern::crash_file_len(*i), "marker of {name}");
        match view.read(&format!("crash/{name}")) {
            Ok(got) if got == want => {}
            Ok(got) => bad.push(format!("crash/{name}: {} bytes, expected {len} (or other bytes)", got.len())),
            Err(e) => bad.push(format!("crash/{name}: {e}")),
        }
    }
    assert!(bad.is_empty(), "fsynced files lost or wrong after recovery:\n{}", bad.join("\n"));
}

#[test]
fn a_killed_guest_and_daemon_lose_nothing_fsynced() {
    crash_and_recover("ext4_guest: kill guest and daemon, recover (QEMU 7.2)", false);
}

#[test]
fn a_killed_dax_guest_and_daemon_lose_nothing_fsynced() {
    crash_and_recover("ext4_guest: kill a DAX guest and the daemon, recover (QEMU 11, dax=always)", true);
}
