//! The three feature sets of the superblock, as typed bit sets.

macro_rules! feature_set {
    ($(#[$m:meta])* $name:ident { $( $(#[$fm:meta])* $flag:ident = $val:expr, )* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name(pub u32);

        impl $name {
            $( $(#[$fm])* pub const $flag: u32 = $val; )*
            /// Every flag this implementation knows.
            pub const KNOWN: u32 = 0 $( | $val )*;

            /// Whether all bits of `flag` are set.
            pub fn has(self, flag: u32) -> bool {
                self.0 & flag == flag
            }

            /// Bits that this implementation does not know.
            pub fn unknown(self) -> u32 {
                self.0 & !Self::KNOWN
            }

            /// Names of the set flags, in the spelling of `dumpe2fs`.
            pub fn names(self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $( if self.0 & $val != 0 { v.push(feature_name(stringify!($flag))); } )*
                v
            }
        }
    };
}

fn feature_name(flag: &'static str) -> &'static str {
    match flag {
        "DIR_PREALLOC" => "dir_prealloc",
        "IMAGIC_INODES" => "imagic_inodes",
        "HAS_JOURNAL" => "has_journal",
        "EXT_ATTR" => "ext_attr",
        "RESIZE_INODE" => "resize_inode",
        "DIR_INDEX" => "dir_index",
        "LAZY_BG" => "lazy_bg",
        "EXCLUDE_BITMAP" => "exclude_bitmap",
        "SPARSE_SUPER2" => "sparse_super2",
        "FAST_COMMIT" => "fast_commit",
        "STABLE_INODES" => "stable_inodes",
        "ORPHAN_FILE" => "orphan_file",
        "COMPRESSION" => "compression",
        "FILETYPE" => "filetype",
        "RECOVER" => "needs_recovery",
        "JOURNAL_DEV" => "journal_dev",
        "META_BG" => "meta_bg",
        "EXTENTS" => "extent",
        "IS_64BIT" => "64bit",
        "MMP" => "mmp",
        "FLEX_BG" => "flex_bg",
        "EA_INODE" => "ea_inode",
        "DIRDATA" => "dirdata",
        "CSUM_SEED" => "metadata_csum_seed",
        "LARGEDIR" => "large_dir",
        "INLINE_DATA" => "inline_data",
        "ENCRYPT" => "encrypt",
        "CASEFOLD" => "casefold",
        "SPARSE_SUPER" => "sparse_super",
        "LARGE_FILE" => "large_file",
        "HUGE_FILE" => "huge_file",
        "GDT_CSUM" => "uninit_bg",
        "DIR_NLINK" => "dir_nlink",
        "EXTRA_ISIZE" => "extra_isize",
        "HAS_SNAPSHOT" => "snapshot",
        "QUOTA" => "quota",
        "BIGALLOC" => "bigalloc",
        "METADATA_CSUM" => "metadata_csum",
        "REPLICA" => "replica",
        "READONLY" => "read-only",
        "PROJECT" => "project",
        "SHARED_BLOCKS" => "shared_blocks",
        "VERITY" => "verity",
        "ORPHAN_PRESENT" => "orphan_present",
        other => other,
    }
}

feature_set!(
    /// Compatible features: an implementation that does not know one may still read and write.
    Compat {
        /// Directory preallocation.
        DIR_PREALLOC = 0x0001,
        /// AFS server inodes.
        IMAGIC_INODES = 0x0002,
        /// Has a jbd2 journal.
        HAS_JOURNAL = 0x0004,
        /// Extended attributes.
        EXT_ATTR = 0x0008,
        /// Reserved GDT blocks for online growth.
        RESIZE_INODE = 0x0010,
        /// Hashed (htree) directories.
        DIR_INDEX = 0x0020,
        /// Lazy block group initialisation (obsolete).
        LAZY_BG = 0x0040,
        /// Exclude bitmap (snapshots, never merged).
        EXCLUDE_BITMAP = 0x0100,
        /// At most two backup superblocks, named in `s_backup_bgs`.
        SPARSE_SUPER2 = 0x0200,
        /// Fast commits in the journal.
        FAST_COMMIT = 0x0400,
        /// Inode numbers never change.
        STABLE_INODES = 0x0800,
        /// Orphan file instead of the orphan list.
        ORPHAN_FILE = 0x1000,
    }
);

feature_set!(
    /// Incompatible features: an implementation that does not know one must not open the image.
    Incompat {
        /// Compression (never implemented upstream).
        COMPRESSION = 0x0001,
        /// Directory entries record the file type.
        FILETYPE = 0x0002,
        /// The journal needs recovery.
        RECOVER = 0x0004,
        /// This is an external journal device.
        JOURNAL_DEV = 0x0008,
        /// Meta block groups.
        META_BG = 0x0010,
        /// Extent-mapped files.
        EXTENTS = 0x0040,
        /// 64-bit block numbers and descriptors.
        IS_64BIT = 0x0080,
        /// Multiple mount protection.
        MMP = 0x0100,
        /// Flexible block groups.
        FLEX_BG = 0x0200,
        /// Large xattr values in inodes.
        EA_INODE = 0x0400,
        /// Data in directory entries.
        DIRDATA = 0x1000,
        /// Checksum seed stored in the superblock.
        CSUM_SEED = 0x2000,
        /// Directories over 2 GiB or 3-level htrees.
        LARGEDIR = 0x4000,
        /// Data stored in the inode.
        INLINE_DATA = 0x8000,
        /// Encrypted inodes.
        ENCRYPT = 0x10000,
        /// Case-insensitive directories.
        CASEFOLD = 0x20000,
    }
);

feature_set!(
    /// Read-only compatible features: an implementation that does not know one may only read.
    RoCompat {
        /// Sparse superblock backups.
        SPARSE_SUPER = 0x0001,
        /// Files over 2 GiB.
        LARGE_FILE = 0x0002,
        /// Huge files (i_blocks in file-system blocks).
        HUGE_FILE = 0x0008,
        /// Group descriptor checksums (crc16), uninitialised groups.
        GDT_CSUM = 0x0010,
        /// Directories with more than 65000 subdirectories.
        DIR_NLINK = 0x0020,
        /// Large inodes carry extra fields.
        EXTRA_ISIZE = 0x0040,
        /// Snapshots.
        HAS_SNAPSHOT = 0x0080,
        /// Quota inodes.
        QUOTA = 0x0100,
        /// Allocation in clusters.
        BIGALLOC = 0x0200,
        /// crc32c checksums on all metadata.
        METADATA_CSUM = 0x0400,
        /// Replicas.
        REPLICA = 0x0800,
        /// Read-only image.
        READONLY = 0x1000,
        /// Project quotas.
        PROJECT = 0x2000,
        /// Shared blocks (deduplicated, read-only).
        SHARED_BLOCKS = 0x4000,
        /// fs-verity files.
        VERITY = 0x8000,
        /// The orphan file holds entries.
        ORPHAN_PRESENT = 0x10000,
    }
);
