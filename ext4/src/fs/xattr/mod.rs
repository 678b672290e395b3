//! Extended attributes: reading ([`read`]), changing ([`write`]) and the
//! POSIX ACL semantics built on them ([`acl`]).

pub mod acl;
pub mod read;
pub mod write;
