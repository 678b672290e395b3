//! Request extensions (FUSE 7.38 and later): after a request's arguments
//! come `total_extlen * 8` bytes of records, each a `fuse_ext_header` (its
//! size, header included and a multiple of 8, and its type) and a body.
//! The one the daemon uses is FUSE_EXT_GROUPS: with FUSE_CREATE_SUPP_GROUP
//! negotiated, the kernel sends on create-like requests the parent
//! directory's group when the caller is in it through a supplementary
//! group — the only way a guest's supplementary groups reach the daemon.

use fuse_abi::linux::fuse_ext_type;

/// Most groups taken from one request (the kernel sends one).
pub const MAX_EXT_GROUPS: usize = 32;

/// Size of a `fuse_ext_header`.
const HEADER: usize = 8;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The supplementary groups carried by the extension area `ext` of a
/// request (empty when it carries none); `None` when the area is malformed
/// (a record shorter than its header, not 8-byte aligned, past the end, or
/// a group list longer than its record or than [`MAX_EXT_GROUPS`]).
/// Records of other types are skipped.
pub fn supp_groups(ext: &[u8]) -> Option<Vec<u32>> {
    let mut groups = Vec::new();
    let mut pos = 0usize;
    while pos < ext.len() {
        let size = u32_at(ext, pos)? as usize;
        let kind = u32_at(ext, pos + 4)?;
        if size < HEADER || size % 8 != 0 || size > ext.len() - pos {
            return None;
        }
        if kind == fuse_ext_type::FUSE_EXT_GROUPS as u32 {
            let body = &ext[pos + HEADER..pos + size];
            let n = u32_at(body, 0)? as usize;
            if n > MAX_EXT_GROUPS || groups.len() + n > MAX_EXT_GROUPS || 4 + n * 4 > body.len() {
                return None;
            }
            groups.extend((0..n).map(|i| u32_at(body, 4 + 4 * i).unwrap_or(u32::MAX)));
        }
        pos += size;
    }
    Some(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, body: &[u8]) -> Vec<u8> {
        let size = (HEADER + body.len()).next_multiple_of(8);
        let mut v = Vec::new();
        v.extend_from_slice(&(size as u32).to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(body);
        v.resize(size, 0);
        v
    }

    fn groups_body(g: &[u32]) -> Vec<u8> {
        let mut v = (g.len() as u32).to_le_bytes().to_vec();
        for x in g {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }

    #[test]
    fn groups_are_read_and_other_records_skipped() {
        assert_eq!(supp_groups(&[]), Some(vec![]));
        let mut ext = record(31, &[1, 2, 3, 4]);
        ext.extend(record(32, &groups_body(&[50])));
        assert_eq!(supp_groups(&ext), Some(vec![50]));
    }

    #[test]
    fn malformed_areas_are_refused() {
        assert_eq!(supp_groups(&[1, 2, 3]), None, "shorter than a header");
        let mut r = record(32, &groups_body(&[50]));
        r[0] = 4;
        assert_eq!(supp_groups(&r), None, "size below the header");
        let mut r = record(32, &groups_body(&[50]));
        r[0] = 200;
        assert_eq!(supp_groups(&r), None, "size past the end");
        let mut r = record(32, &groups_body(&[50]));
        r[0..4].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(supp_groups(&r), None, "not aligned");
        let mut body = groups_body(&[50]);
        body[0..4].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(supp_groups(&record(32, &body)), None, "more groups than the record holds");
        let many: Vec<u32> = (0..40).collect();
        assert_eq!(supp_groups(&record(32, &groups_body(&many))), None, "too many groups");
    }
}
