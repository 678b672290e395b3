//! INTERFACE STUB (owner: helper "xattrs"). Xattr entries and blocks.
