//! Rendering of inode facts for people: dates, modes and escaped bytes,
//! close to what debugfs prints so outputs can be compared.

use ext4::{FileType, Timestamp};

/// Days since 1970-01-01 to a (year, month, day) civil date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `26-Nov-2026 23:32` in UTC, as `debugfs ls -l` prints dates.
pub fn short_date(t: Timestamp) -> String {
    let (y, m, d) = civil_from_days(t.secs.div_euclid(86_400));
    let s = t.secs.rem_euclid(86_400);
    format!("{d}-{}-{y} {:02}:{:02}", MONTHS[m as usize - 1], s / 3600, s % 3600 / 60)
}

/// `2026-11-26 23:32:30.123456789 UTC`: the full timestamp with nanoseconds.
pub fn full_date(t: Timestamp) -> String {
    let (y, m, d) = civil_from_days(t.secs.div_euclid(86_400));
    let s = t.secs.rem_euclid(86_400);
    format!(
        "{:#010x}:{:08x} -- {y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:09} UTC",
        t.secs as u32,
        t.nsecs << 2 | ((t.secs >> 32) as u32 & 3),
        s / 3600,
        s % 3600 / 60,
        s % 60,
        t.nsecs
    )
}

/// The type name debugfs uses in `stat`.
pub fn type_name(ft: Option<FileType>) -> &'static str {
    match ft {
        Some(FileType::Regular) => "regular",
        Some(FileType::Directory) => "directory",
        Some(FileType::Symlink) => "symlink",
        Some(FileType::CharDevice) => "character special",
        Some(FileType::BlockDevice) => "block special",
        Some(FileType::Fifo) => "FIFO",
        Some(FileType::Socket) => "socket",
        None => "bad type",
    }
}

/// `ls -l`-style permission string, e.g. `drwxr-xr-x`.
pub fn mode_string(mode: u16) -> String {
    let t = match FileType::from_mode(mode) {
        Some(FileType::Regular) => '-',
        Some(FileType::Directory) => 'd',
        Some(FileType::Symlink) => 'l',
        Some(FileType::CharDevice) => 'c',
        Some(FileType::BlockDevice) => 'b',
        Some(FileType::Fifo) => 'p',
        Some(FileType::Socket) => 's',
        None => '?',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        let bit = 1 << (8 - i);
        let on = mode & bit != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (on, special) {
            (true, false) => c,
            (false, false) => '-',
            (true, true) if i == 8 => 't',
            (false, true) if i == 8 => 'T',
            (true, true) => 's',
            (false, true) => 'S',
        });
    }
    s
}

/// Bytes as text with C-style escapes for anything not printable ASCII.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\{b:03o}")),
        }
    }
    s
}

/// Bytes as `0x...` hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(short_date(Timestamp { secs: 0, nsecs: 0 }), "1-Jan-1970 00:00");
        assert_eq!(short_date(Timestamp { secs: 1_700_000_000, nsecs: 0 }), "14-Nov-2023 22:13");
        assert!(full_date(Timestamp { secs: 951_782_400, nsecs: 5 }).contains("2000-02-29 00:00:00.000000005"));
        assert_eq!(short_date(Timestamp { secs: -86_400, nsecs: 0 }), "31-Dec-1969 00:00");
    }

    #[test]
    fn modes() {
        assert_eq!(mode_string(0o40755), "drwxr-xr-x");
        assert_eq!(mode_string(0o104755), "-rwsr-xr-x");
        assert_eq!(mode_string(0o41777), "drwxrwxrwt");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
    }

    #[test]
    fn escapes() {
        assert_eq!(escape(b"a\"\xff\n"), "a\\\"\\377\\012");
        assert_eq!(hex(&[0, 0xab]), "0x00ab");
    }
}
