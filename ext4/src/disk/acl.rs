//! INTERFACE STUB (owner: helper "xattrs"). POSIX ACLs.
