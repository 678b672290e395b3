//! The virtio-fs device configuration space (virtio 1.2, 5.11.4): a
//! 36-byte tag, NUL-padded, and the number of request queues (u32 LE).
//! QEMU 7.2's `vhost-user-fs-pci` builds it itself from its `tag=`
//! property; QEMU 11's generic `vhost-user-test-device-pci,virtio-id=26`
//! asks the backend with GET_CONFIG, answered from here.

/// Length of the tag field.
pub const TAG_LEN: usize = 36;
/// Size of the configuration space.
pub const CONFIG_SIZE: usize = TAG_LEN + 4;

/// Why a tag cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// Empty.
    #[error("the tag is empty")]
    Empty,
    /// Longer than the field.
    #[error("the tag {0:?} is longer than {TAG_LEN} bytes")]
    TooLong(String),
    /// Has a NUL byte.
    #[error("the tag {0:?} holds a NUL byte")]
    Nul(String),
}

/// The configuration space of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfigSpace {
    bytes: [u8; CONFIG_SIZE],
}

impl FsConfigSpace {
    /// The space for `tag` with `request_queues` request queues.
    pub fn new(tag: &str, request_queues: u32) -> Result<Self, TagError> {
        if tag.is_empty() {
            return Err(TagError::Empty);
        }
        if tag.len() > TAG_LEN {
            return Err(TagError::TooLong(tag.into()));
        }
        if tag.as_bytes().contains(&0) {
            return Err(TagError::Nul(tag.into()));
        }
        let mut bytes = [0u8; CONFIG_SIZE];
        bytes[..tag.len()].copy_from_slice(tag.as_bytes());
        bytes[TAG_LEN..].copy_from_slice(&request_queues.to_le_bytes());
        Ok(FsConfigSpace { bytes })
    }

    /// The answer to GET_CONFIG for `size` bytes at `offset`: the bytes
    /// that exist, zero past the end (QEMU may ask for more than 40).
    pub fn read(&self, offset: u32, size: u32) -> Vec<u8> {
        let mut out = vec![0u8; size as usize];
        let start = (offset as usize).min(CONFIG_SIZE);
        let end = (offset as usize).saturating_add(size as usize).min(CONFIG_SIZE);
        out[..end - start].copy_from_slice(&self.bytes[start..end]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_partial_reads() {
        let c = FsConfigSpace::new("myfs", 2).unwrap();
        let all = c.read(0, 40);
        assert_eq!(&all[..5], b"myfs\0");
        assert_eq!(&all[36..], &2u32.to_le_bytes());
        assert_eq!(c.read(36, 8), vec![2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(c.read(100, 4), vec![0; 4]);
        assert!(FsConfigSpace::new(&"x".repeat(37), 1).is_err());
        assert!(FsConfigSpace::new("", 1).is_err());
        assert!(FsConfigSpace::new(&"x".repeat(36), 1).is_ok());
    }
}
