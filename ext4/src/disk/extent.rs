//! INTERFACE STUB (owner: helper "file data"). Extent tree nodes.
