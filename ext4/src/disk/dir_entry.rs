//! INTERFACE STUB (owner: helper "directories").
