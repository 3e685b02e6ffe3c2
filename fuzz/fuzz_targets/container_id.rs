//! Container ids as every `corral` verb checks them before it joins one to
//! the state root. An accepted id must name exactly one directory entry
//! directly below the root.

#![no_main]

use std::path::{Component, Path};

use corral_runtime::container::validate_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(id) = std::str::from_utf8(data) else {
        return;
    };
    if validate_id(id).is_err() {
        return;
    }
    let root = Path::new("/run/corral/containers");
    let joined = root.join(id);
    assert_eq!(
        joined.parent(),
        Some(root),
        "id {id:?} leaves the state root"
    );
    let components: Vec<Component> = Path::new(id).components().collect();
    assert!(
        matches!(components.as_slice(), [Component::Normal(_)]),
        "id {id:?} is not one plain path component"
    );
});
