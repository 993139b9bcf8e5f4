//! Prints the PushCluster CRD YAML; `scripts/gen-crd.sh` writes it to the checked-in copies.
//! `crdgen --chart` prints the chart's template version (behind `crds.install`, kept on uninstall).

fn main() {
    if std::env::args().any(|a| a == "--chart") {
        print!("{}", volley_operator::crdgen::chart_crd_template());
    } else {
        print!("{}", volley_operator::crdgen::crd_yaml());
    }
}
