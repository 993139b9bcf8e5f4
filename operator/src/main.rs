//! Volley operator binary.
fn main() {}
