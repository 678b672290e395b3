//! Permission checks as the kernel's VFS makes them (`generic_permission`,
//! `may_delete`, `setattr_prepare`), done by the daemon for every request:
//! the client kernel may check too (virtio-fs and POSIX ACL mounts use
//! default_permissions), but a guest is not trusted to. Mode bits, POSIX
//! access ACLs and supplementary groups count; uid 0 has the capabilities
//! DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, CHOWN.

use super::errno::{Errno, FsResult};
use ext4::disk::acl::{ACL_EXECUTE, ACL_READ, ACL_WRITE, Acl, AclTag};
use ext4::disk::inode::{S_IFMT, S_ISGID, S_ISUID, S_ISVTX};
use ext4::{Ext4, Inode};
use std::sync::OnceLock;

/// Read permission.
pub const MAY_READ: u16 = ACL_READ;
/// Write permission.
pub const MAY_WRITE: u16 = ACL_WRITE;
/// Execute / search permission.
pub const MAY_EXEC: u16 = ACL_EXECUTE;

/// Where a caller's supplementary groups come from.
pub trait GroupSource: Send + Sync {
    /// The supplementary groups of process `pid`, if they can be known.
    fn groups(&self, pid: u32) -> Vec<u32>;
}

/// Supplementary groups unknown (a guest's processes): only the primary group counts.
#[derive(Debug, Default)]
pub struct NoGroups;

impl GroupSource for NoGroups {
    fn groups(&self, _pid: u32) -> Vec<u32> {
        Vec::new()
    }
}

/// The caller of one request.
pub struct Caller<'a> {
    /// File system uid.
    pub uid: u32,
    /// File system gid.
    pub gid: u32,
    /// Process id (0 when the kernel sends on its own behalf).
    pub pid: u32,
    source: &'a dyn GroupSource,
    groups: OnceLock<Vec<u32>>,
    /// Supplementary groups the request itself carried (FUSE_EXT_GROUPS).
    carried: Vec<u32>,
}

impl<'a> Caller<'a> {
    /// The caller with these ids; supplementary groups are fetched from
    /// `source` only if a check needs them.
    pub fn new(uid: u32, gid: u32, pid: u32, source: &'a dyn GroupSource) -> Self {
        Caller { uid, gid, pid, source, groups: OnceLock::new(), carried: Vec::new() }
    }

    /// The caller also in `groups`, supplementary groups its request
    /// carried (a guest's only way to tell them).
    pub fn with_groups(mut self, groups: Vec<u32>) -> Self {
        self.carried = groups;
        self
    }

    /// Whether the caller has the capabilities of uid 0.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the caller is in group `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        gid == self.gid
            || self.carried.contains(&gid)
            || (self.pid != 0 && self.groups.get_or_init(|| self.source.groups(self.pid)).contains(&gid))
    }

    /// Whether the caller owns `inode` or has CAP_FOWNER.
    pub fn owns(&self, inode: &Inode) -> bool {
        self.is_root() || self.uid == inode.uid()
    }
}

/// The permission bits (`rwx`, as in an ACL entry) that `inode` grants
/// `caller`, before capabilities.
fn granted(fs: &Ext4, inode: &Inode, caller: &Caller<'_>) -> FsResult<u16> {
    let mode = inode.mode();
    if caller.uid == inode.uid() {
        return Ok((mode >> 6) & 7);
    }
    if let Some(acl) = access_acl(fs, inode)? {
        return Ok(acl_grants(&acl, inode.gid(), caller));
    }
    if caller.in_group(inode.gid()) {
        return Ok((mode >> 3) & 7);
    }
    Ok(mode & 7)
}

/// The access ACL of `inode`, if it has one (looked up only when the
/// inode has extended attributes at all).
fn access_acl(fs: &Ext4, inode: &Inode) -> FsResult<Option<Acl>> {
    if inode.file_acl() == 0 && inode.xattr_area().iter().all(|&b| b == 0) {
        return Ok(None);
    }
    match fs.get_xattr(inode, b"system.posix_acl_access") {
        Ok(v) => Ok(Some(Acl::from_xattr(&v).map_err(|_| Errno::EIO)?)),
        Err(ext4::Error::NoAttr) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The POSIX.1e access check for a caller who is not the owner: a named
/// user entry, else the union of matching group entries, each limited by
/// the mask, else the other entry.
fn acl_grants(acl: &Acl, owner_gid: u32, caller: &Caller<'_>) -> u16 {
    let mask = acl.entries.iter().find(|e| e.tag == AclTag::Mask).map_or(7, |e| e.perm);
    if let Some(e) = acl.entries.iter().find(|e| e.tag == AclTag::User(caller.uid)) {
        return e.perm & mask;
    }
    let mut group_match = false;
    let mut perm = 0;
    for e in &acl.entries {
        let hit = match e.tag {
            AclTag::GroupObj => caller.in_group(owner_gid),
            AclTag::Group(id) => caller.in_group(id),
            _ => false,
        };
        if hit {
            group_match = true;
            perm |= e.perm;
        }
    }
    if group_match {
        return perm & mask;
    }
    acl.entries.iter().find(|e| e.tag == AclTag::Other).map_or(0, |e| e.perm)
}

/// `generic_permission`: whether `caller` may access `inode` with `mask`
/// ([`MAY_READ`] | [`MAY_WRITE`] | [`MAY_EXEC`]); EACCES otherwise. Root
/// may read and write anything, search any directory and execute a file
/// with at least one execute bit.
pub fn check(fs: &Ext4, inode: &Inode, caller: &Caller<'_>, mask: u16) -> FsResult<()> {
    if caller.is_root() {
        let exec_ok = mask & MAY_EXEC == 0 || inode.is_dir() || inode.mode() & 0o111 != 0;
        return if exec_ok { Ok(()) } else { Err(Errno::EACCES) };
    }
    if granted(fs, inode, caller)? & mask == mask { Ok(()) } else { Err(Errno::EACCES) }
}

/// `may_delete`'s sticky-directory rule: in a sticky directory only the
/// owner of the entry, the owner of the directory or root may remove or
/// rename it.
pub fn check_sticky(dir: &Inode, victim: &Inode, caller: &Caller<'_>) -> FsResult<()> {
    if dir.mode() & S_ISVTX != 0 && !caller.is_root() && caller.uid != dir.uid() && caller.uid != victim.uid() {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// The permission bits a chmod by `caller` may set: the owner or root
/// only (EPERM), and S_ISGID is dropped when a non-root caller is not in
/// the file's group (`setattr_prepare`).
pub fn chmod_mode(inode: &Inode, caller: &Caller<'_>, mode: u16) -> FsResult<u16> {
    if !caller.owns(inode) {
        return Err(Errno::EPERM);
    }
    let mut mode = mode & !S_IFMT;
    if !caller.is_root() && !caller.in_group(inode.gid()) {
        mode &= !S_ISGID;
    }
    Ok(mode)
}

/// The mode `inode` keeps after a write, truncate or chown by `caller`
/// that the client marked as one to drop privileges (FUSE_WRITE_KILL_SUIDGID,
/// FATTR_KILL_SUIDGID, FUSE_OPEN_KILL_SUIDGID), from `mode`: as the VFS's
/// `setattr_should_drop_suidgid`, set-user-id always goes; set-group-id goes
/// when the group may execute, or (without group execute, where it marks
/// mandatory locking) when the caller is neither in the file's group nor
/// has CAP_FSETID.
pub fn killed_privs(inode: &Inode, caller: &Caller<'_>, mode: u16) -> u16 {
    let mut m = mode & !S_ISUID;
    if m & S_ISGID != 0 && (m & 0o010 != 0 || !(caller.is_root() || caller.in_group(inode.gid()))) {
        m &= !S_ISGID;
    }
    m
}

/// `chown_ok` / `chgrp_ok`: root may change both ids; the owner may only
/// "change" the uid to itself and the gid to a group it is in.
pub fn check_chown(inode: &Inode, caller: &Caller<'_>, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
    if caller.is_root() {
        return Ok(());
    }
    let uid_ok = uid.is_none_or(|u| u == inode.uid() && caller.uid == inode.uid());
    let gid_ok = gid.is_none_or(|g| {
        (caller.uid == inode.uid() && caller.in_group(g)) || g == inode.gid() && caller.uid == inode.uid()
    });
    if uid_ok && gid_ok { Ok(()) } else { Err(Errno::EPERM) }
}

/// Setting times: explicit values need ownership (EPERM); "now" needs
/// ownership or write permission (EACCES).
pub fn check_times(fs: &Ext4, inode: &Inode, caller: &Caller<'_>, explicit: bool) -> FsResult<()> {
    if caller.owns(inode) {
        return Ok(());
    }
    if explicit {
        return Err(Errno::EPERM);
    }
    check(fs, inode, caller, MAY_WRITE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ext4::disk::acl::AclEntry;

    struct Groups(Vec<u32>);
    impl GroupSource for Groups {
        fn groups(&self, _pid: u32) -> Vec<u32> {
            self.0.clone()
        }
    }

    fn acl(entries: &[(AclTag, u16)]) -> Acl {
        Acl { entries: entries.iter().map(|&(tag, perm)| AclEntry { tag, perm }).collect() }
    }

    #[test]
    fn acl_named_entries_are_masked() {
        let a = acl(&[
            (AclTag::UserObj, 7),
            (AclTag::User(1000), 7),
            (AclTag::GroupObj, 4),
            (AclTag::Group(50), 6),
            (AclTag::Mask, 5),
            (AclTag::Other, 0),
        ]);
        let none = NoGroups;
        assert_eq!(acl_grants(&a, 10, &Caller::new(1000, 1, 1, &none)), 5);
        assert_eq!(acl_grants(&a, 10, &Caller::new(2000, 10, 1, &none)), 4);
        assert_eq!(acl_grants(&a, 10, &Caller::new(2000, 3, 1, &none)), 0);
        let g = Groups(vec![50]);
        assert_eq!(acl_grants(&a, 10, &Caller::new(2000, 3, 1, &g)), 4, "group 50 rw- masked by r-x");
    }

    #[test]
    fn killed_privs_follows_setattr_should_drop_suidgid() {
        let mut inode = Inode::parse(12, &[0; 256], None).unwrap();
        inode.raw.gid_lo = 50;
        let none = NoGroups;
        let (outsider, member, root) =
            (Caller::new(7, 7, 1, &none), Caller::new(7, 50, 1, &none), Caller::new(0, 0, 1, &none));
        // (mode, left for outsider, member, root): generic/355's modes and more.
        for (mode, out, mem, r) in [
            (0o6666, 0o0666, 0o2666, 0o2666),
            (0o6766, 0o0766, 0o2766, 0o2766),
            (0o6676, 0o0676, 0o0676, 0o0676),
            (0o6776, 0o0776, 0o0776, 0o0776),
            (0o2644, 0o0644, 0o2644, 0o2644),
            (0o4755, 0o0755, 0o0755, 0o0755),
            (0o0644, 0o0644, 0o0644, 0o0644),
        ] {
            let kept = [&outsider, &member, &root].map(|c| killed_privs(&inode, c, mode));
            assert_eq!(kept, [out, mem, r], "mode {mode:o}");
        }
    }

    #[test]
    fn supplementary_groups_are_only_fetched_when_needed() {
        struct Panics;
        impl GroupSource for Panics {
            fn groups(&self, _pid: u32) -> Vec<u32> {
                panic!("fetched")
            }
        }
        let c = Caller::new(5, 7, 1, &Panics);
        assert!(c.in_group(7));
    }
}
