//! corral's image store: importing images from the formats operators have,
//! unpacking each layer once into a content-addressed directory, and
//! collecting layers that no image uses.
//!
//! A container's root is overlayfs with an image's layer directories as its
//! lower layers ([`Store::lower_dirs`]), so every container of an image
//! shares one copy of its files. See [`store`] for the directory layout and
//! [`import`] for the accepted sources.

mod archive;
pub mod compression;
pub mod digest;
mod dirtar;
mod docker;
pub mod gc;
pub mod import;
pub mod lease;
mod oci;
pub mod progress;
pub mod store;
pub mod unpack;
pub mod user;

pub use digest::Digest;
pub use gc::{collect_garbage, GcReport};
pub use import::{import, ImportError, ImportOptions, ImportReport, Platform, SourceFormat};
pub use progress::{LayerOutcome, NoProgress, Progress};
pub use store::{ImageConfig, ImageRecord, LayerRecord, Store, StoreError, DEFAULT_STORE};
pub use user::{resolve_user, AccountRoot, ExecUser, UserError};
