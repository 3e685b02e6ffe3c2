include!("../build-support/pack_relocations.rs");

fn main() {
    pack_relative_relocations();
}
