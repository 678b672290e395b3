//! demo_inline_dax: the guest side of `cargo run -p vmtests --bin demo`.
//! Maps the inline file `MNT/hello.txt` with MAP_SHARED, prints what the
//! mount and `statx` say, the bytes read through the mapping, stores a
//! word through a writable mapping, msyncs and reads the file back with
//! `read()`. Lines start with `VMDEMO` for the host to show.

use std::fs::{self, OpenOptions};
use std::path::Path;

use crate::pattern::{DEMO_FILE, DEMO_STORE, DEMO_STORE_AT, DEMO_TEXT};
use crate::{Ctx, Mapping, Outcome, compare, read_file, say};

/// demo_inline_dax: see the module documentation.
pub fn case_inline_dax(root: &Path) -> Outcome {
    let mnt = root.parent().expect("the case root has a parent");
    let p = mnt.join(DEMO_FILE);
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    for l in mounts.lines().filter(|l| l.contains("virtiofs")) {
        say(&format!("VMDEMO mount: {l}"));
    }
    let len = fs::metadata(&p).ctx("stat", &p)?.len() as usize;
    say(&format!("VMDEMO {DEMO_FILE}: {len} bytes, statx DAX attribute: {}", crate::mapcases::is_dax(&p)?));
    let f = OpenOptions::new().read(true).write(true).open(&p).ctx("open", &p)?;
    let mut m = Mapping::new(&f, len, libc::PROT_READ | libc::PROT_WRITE).ctx("mmap", &p)?;
    say(&format!(
        "VMDEMO mmap({len} bytes, PROT_READ|PROT_WRITE, MAP_SHARED) of {DEMO_FILE} at {:p}",
        m.bytes().as_ptr()
    ));
    let text = String::from_utf8_lossy(m.bytes()).into_owned();
    say(&format!("VMDEMO read through the mapping: {:?}", text));
    compare("the mapping", m.bytes(), DEMO_TEXT.as_bytes())?;
    m.bytes()[DEMO_STORE_AT..DEMO_STORE_AT + DEMO_STORE.len()].copy_from_slice(DEMO_STORE.as_bytes());
    m.msync().ctx("msync", &p)?;
    say(&format!("VMDEMO stored {DEMO_STORE:?} at byte {DEMO_STORE_AT} through the mapping, msync done"));
    drop(m);
    drop(f);
    let after = read_file(&p)?;
    say(&format!("VMDEMO read() after munmap: {:?}", String::from_utf8_lossy(&after)));
    compare("read() after the store", &after, crate::pattern::demo_after().as_bytes())
}
