//! `cargo xtask`: build, check and load Volley's OCI image archives without a container engine.
//!
//! ```text
//! cargo xtask images [--skip-build]   release binaries -> target/images/<name>-<version>.oci.tar
//! cargo xtask check-images            verify each archive, run it from its own rootfs (root)
//! cargo xtask load ctr|kind|k3d       load the archives into a cluster's runtime
//! cargo xtask version                 the workspace version (archive names, tags)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::cargo::{build_all, images_dir};
use xtask::load::Loader;
use xtask::spec::{IMAGES, revision, version, workspace_root};
use xtask::{smoke, verify};

#[derive(Debug, Parser)]
#[command(about = "Volley build tasks")]
struct Cli {
    /// Where the archives are (default: <target dir>/images).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the release binaries and write one OCI image archive per binary.
    Images {
        /// Pack the binaries already in target/release instead of building them.
        #[arg(long)]
        skip_build: bool,
    },
    /// Verify every archive (layout, digests, config) and run each binary from its unpacked
    /// root filesystem as 65532:65532 (chroot: needs root); a failed image's root filesystem
    /// stays in <out>/rootfs/<name> for inspection.
    CheckImages,
    /// Load every archive into a cluster: ctr (VOLLEY_E2E_CTR overrides the program), kind or
    /// k3d (VOLLEY_E2E_CLUSTER names the cluster).
    Load { loader: String },
    /// Print the workspace version.
    Version,
}

fn run(cli: Cli) -> Result<(), String> {
    let root = workspace_root();
    let out = cli.out.unwrap_or_else(|| images_dir(&root));
    match cli.task {
        Task::Images { skip_build } => {
            for b in build_all(&root, &out, skip_build).map_err(|e| e.to_string())? {
                println!("{} {} {}", b.path.display(), b.reference, b.manifest_digest);
            }
        }
        Task::CheckImages => {
            let rev = revision(&root);
            for image in IMAGES {
                let path = image.archive_path(&out, version());
                let v = verify::verify(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                println!(
                    "{}: valid ({} {})",
                    path.display(),
                    v.reference.as_deref().unwrap_or("-"),
                    v.manifest_digest
                );
                let rootfs = out.join("rootfs").join(image.name);
                verify::unpack(&v, &rootfs).map_err(|e| e.to_string())?;
                let line =
                    smoke::version(&rootfs, &image, version(), &rev).map_err(|e| e.to_string())?;
                println!(
                    "{}: chroot {} --version: {line}",
                    image.name,
                    image.binary_path()
                );
                if image.name == "volley-gateway" {
                    let status =
                        smoke::gateway_healthz(&rootfs, &image).map_err(|e| e.to_string())?;
                    println!("{}: standalone start, GET /healthz: {status}", image.name);
                }
                // Passed: the unpacked copy is only worth its disk space when a check fails.
                std::fs::remove_dir_all(&rootfs)
                    .map_err(|e| format!("{}: {e}", rootfs.display()))?;
            }
        }
        Task::Load { loader } => {
            let ctr = std::env::var("VOLLEY_E2E_CTR").ok();
            let cluster = std::env::var("VOLLEY_E2E_CLUSTER").ok();
            let loader = Loader::parse(&loader, ctr.as_deref(), cluster.as_deref())
                .map_err(|e| e.to_string())?;
            for image in IMAGES {
                let path = image.archive_path(&out, version());
                loader.load(&path)?;
                println!(
                    "loaded {} as {}",
                    path.display(),
                    image.reference(version())
                );
            }
        }
        Task::Version => println!("{}", version()),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
