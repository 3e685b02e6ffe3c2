//! Job specs for corral: the types of a job file, parsing with positions,
//! validation, drop-in merging, the JSON Schema and the conversions from spec
//! values to kernel values.

pub mod paths;
pub mod types;
pub mod units;

pub use types::*;
pub use units::{ByteSize, DurationValue};
