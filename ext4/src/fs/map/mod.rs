//! A file's logical → physical mapping: lookup through extents or block
//! maps ([`lookup`]), updates of the extent tree ([`extent_tree`]) and the
//! block map ([`block_map`]) through a [`store`], block reservations
//! ([`reservation`]) and the set_blocks step that maps reserved blocks
//! ([`set_blocks`]).

pub mod block_map;
pub mod extent_tree;
pub mod lookup;
pub mod reservation;
pub mod set_blocks;
pub mod store;
