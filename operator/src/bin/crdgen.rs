//! Prints the PushCluster CRD YAML; `scripts/gen-crd.sh` writes it to the checked-in copies.

fn main() {
    print!("{}", volley_operator::crdgen::crd_yaml());
}
