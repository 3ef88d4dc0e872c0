//! One authorization decision with 10,000 assignments in the store.
fn main() {}
