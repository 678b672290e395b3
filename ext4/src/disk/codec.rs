//! Little-endian field codec and the `layout!` macro that declares an on-disk
//! structure once: the same offset table drives both decoding and encoding,
//! so no byte offset of a structure appears anywhere else.

/// A fixed-size little-endian value stored in an on-disk structure.
pub trait Field: Sized + Copy {
    /// Size in bytes on disk.
    const SIZE: usize;
    /// Reads the value from the start of `b` (which holds at least `SIZE` bytes).
    fn get(b: &[u8]) -> Self;
    /// Writes the value to the start of `b` (which holds at least `SIZE` bytes).
    fn put(self, b: &mut [u8]);
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn get(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..Self::SIZE]);
                <$t>::from_le_bytes(a)
            }
            fn put(self, b: &mut [u8]) {
                b[..Self::SIZE].copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
int_field!(u8, u16, u32, u64);

impl<const N: usize> Field for [u8; N] {
    const SIZE: usize = N;
    fn get(b: &[u8]) -> Self {
        let mut a = [0u8; N];
        a.copy_from_slice(&b[..N]);
        a
    }
    fn put(self, b: &mut [u8]) {
        b[..N].copy_from_slice(&self);
    }
}

impl<const N: usize> Field for [u32; N] {
    const SIZE: usize = 4 * N;
    fn get(b: &[u8]) -> Self {
        let mut a = [0u32; N];
        for (i, v) in a.iter_mut().enumerate() {
            *v = u32::get(&b[4 * i..]);
        }
        a
    }
    fn put(self, b: &mut [u8]) {
        for (i, v) in self.iter().enumerate() {
            v.put(&mut b[4 * i..]);
        }
    }
}

/// Reads a little-endian `u16` at `off`. For variable-layout records
/// (directory entries, xattr entries) whose offsets are computed at run time.
pub fn le16(b: &[u8], off: usize) -> u16 {
    u16::get(&b[off..])
}

/// Reads a little-endian `u32` at `off`.
pub fn le32(b: &[u8], off: usize) -> u32 {
    u32::get(&b[off..])
}

/// The one implementation behind [`layout!`] and [`layout_be!`]: a struct
/// with `pub` fields, its on-disk size, `decode` and `encode`, with every
/// field read and written through `$tr::$get` / `$tr::$put`.
macro_rules! layout_with {
    (
        $tr:ident, $get:ident, $put:ident;
        $(#[$meta:meta])*
        pub struct $name:ident ($size:expr) {
            $( $(#[$fmeta:meta])* $off:literal => $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self::decode(&[0u8; $size])
            }
        }

        impl $name {
            /// Size of the structure on disk, in bytes.
            pub const SIZE: usize = $size;

            /// Decodes the structure from the start of `b`.
            ///
            /// # Panics
            /// If `b` is shorter than [`Self::SIZE`]; callers check lengths first.
            pub fn decode(b: &[u8]) -> Self {
                assert!(b.len() >= Self::SIZE, concat!(stringify!($name), ": short buffer"));
                Self { $( $field: <$ty as $crate::disk::codec::$tr>::$get(&b[$off..]), )* }
            }

            /// Encodes the declared fields into the start of `b`.
            pub fn encode(&self, b: &mut [u8]) {
                assert!(b.len() >= Self::SIZE, concat!(stringify!($name), ": short buffer"));
                $( <$ty as $crate::disk::codec::$tr>::$put(self.$field, &mut b[$off..]); )*
            }
        }
    };
}
pub(crate) use layout_with;

/// Declares a little-endian on-disk structure (ext4): a struct with `pub`
/// fields, its on-disk size, `decode` (from a slice of at least `SIZE`
/// bytes) and `encode`. Fields not listed are preserved by callers that
/// re-encode into the original buffer (encode only touches declared fields).
macro_rules! layout {
    ($($body:tt)*) => { $crate::disk::codec::layout_with!(Field, get, put; $($body)*); };
}
pub(crate) use layout;

/// A fixed-size big-endian value stored in an on-disk structure: the jbd2
/// journal is big-endian throughout, unlike the rest of ext4.
pub trait BeField: Sized + Copy {
    /// Size in bytes on disk.
    const WIDTH: usize;
    /// Reads the value from the start of `b` (which holds at least `WIDTH` bytes).
    fn get_be(b: &[u8]) -> Self;
    /// Writes the value to the start of `b` (which holds at least `WIDTH` bytes).
    fn put_be(self, b: &mut [u8]);
}

macro_rules! be_int_field {
    ($($t:ty),*) => {$(
        impl BeField for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn get_be(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..<Self as BeField>::WIDTH]);
                <$t>::from_be_bytes(a)
            }
            fn put_be(self, b: &mut [u8]) {
                b[..<Self as BeField>::WIDTH].copy_from_slice(&self.to_be_bytes());
            }
        }
    )*};
}
be_int_field!(u8, u16, u32, u64, i32);

impl<const N: usize> BeField for [u8; N] {
    const WIDTH: usize = N;
    fn get_be(b: &[u8]) -> Self {
        <[u8; N] as Field>::get(b)
    }
    fn put_be(self, b: &mut [u8]) {
        <[u8; N] as Field>::put(self, b)
    }
}

impl<const N: usize> BeField for [u32; N] {
    const WIDTH: usize = 4 * N;
    fn get_be(b: &[u8]) -> Self {
        let mut a = [0u32; N];
        for (i, v) in a.iter_mut().enumerate() {
            *v = u32::get_be(&b[4 * i..]);
        }
        a
    }
    fn put_be(self, b: &mut [u8]) {
        for (i, v) in self.iter().enumerate() {
            v.put_be(&mut b[4 * i..]);
        }
    }
}

/// Reads a big-endian `u32` at `off`. For variable-layout big-endian records
/// (jbd2 revoke entries) whose offsets are computed at run time.
pub fn be32(b: &[u8], off: usize) -> u32 {
    u32::get_be(&b[off..])
}

/// Reads a big-endian `u64` at `off`.
pub fn be64(b: &[u8], off: usize) -> u64 {
    u64::get_be(&b[off..])
}

/// [`layout!`] for big-endian structures (jbd2): the same declaration form,
/// with fields read and written through [`BeField`].
macro_rules! layout_be {
    ($($body:tt)*) => { $crate::disk::codec::layout_with!(BeField, get_be, put_be; $($body)*); };
}
pub(crate) use layout_be;

#[cfg(test)]
mod tests {

    layout! {
        /// Test structure.
        pub struct T (16) {
            0 => a: u16,
            2 => b: u32,
            6 => c: [u8; 2],
            8 => d: u64,
        }
    }

    #[test]
    fn roundtrip() {
        let t = T { a: 0x1234, b: 0xdeadbeef, c: [7, 8], d: 0x0102030405060708 };
        let mut buf = [0u8; 16];
        t.encode(&mut buf);
        assert_eq!(&buf[..2], &[0x34, 0x12]);
        assert_eq!(T::decode(&buf), t);
    }

    layout_be! {
        /// Big-endian test structure.
        pub struct B (20) {
            0 => a: u16,
            2 => b: u32,
            6 => c: [u8; 2],
            8 => d: u64,
            16 => e: i32,
        }
    }

    #[test]
    fn roundtrip_be() {
        use super::{be32, be64};
        let t = B { a: 0x1234, b: 0xdeadbeef, c: [7, 8], d: 0x0102030405060708, e: -22 };
        let mut buf = [0u8; 20];
        t.encode(&mut buf);
        assert_eq!(&buf[..6], &[0x12, 0x34, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&buf[8..10], &[1, 2]);
        assert_eq!(&buf[16..], &(-22i32).to_be_bytes());
        assert_eq!(B::decode(&buf), t);
        assert_eq!(be32(&buf, 2), 0xdeadbeef);
        assert_eq!(be64(&buf, 8), 0x0102030405060708);
    }
}
