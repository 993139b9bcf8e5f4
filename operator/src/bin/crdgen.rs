//! Prints the PushCluster CRD YAML.
fn main() {}
