//! Block device I/O and the metadata buffer cache: the lowest layer.

pub mod cache;
pub mod counting_device;
pub mod device;
pub mod fence;
pub mod file_device;
pub mod image_lock;
pub mod mem_device;
pub mod overlay;
pub mod recording_device;

pub use cache::BlockCache;
pub use counting_device::CountingDevice;
pub use device::BlockDevice;
pub use fence::FencedDevice;
pub use file_device::FileDevice;
pub use mem_device::MemDevice;
pub use overlay::OverlayDevice;
