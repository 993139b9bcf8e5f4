//! Volley build tasks: build the release binaries, pack each into an OCI image archive without a
//! container engine, check the archives (layout, digests, and the binary run from its own root
//! filesystem), and load them into a cluster's container runtime.
//!
//! The pure parts (what goes into an image, ldd parsing, the OCI documents) are apart from the
//! IO (cargo, ldd, chroot, ctr/kind/k3d), so they are unit-tested on their own.

pub mod archive;
pub mod cargo;
pub mod digest;
pub mod ldd;
pub mod load;
pub mod rootfs;
pub mod smoke;
pub mod spec;
pub mod verify;

pub use spec::{IMAGES, Image, version};
