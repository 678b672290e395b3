//! INTERFACE STUB (owner: helper "journal").
