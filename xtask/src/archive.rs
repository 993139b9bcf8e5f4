//! Writes an OCI image archive (`oci-archive`): a tar of an OCI image layout (image-spec
//! image-layout.md: `oci-layout`, `index.json`, `blobs/sha256/…`) holding one manifest, its
//! config and one gzip layer. Types from oci-spec, tar from `tar`, gzip from `flate2`; only the
//! glue is here. Every timestamp is fixed and every JSON document canonical, so the same inputs
//! give the same digests.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType,
    OciLayoutBuilder, Os, RootFsBuilder,
};

use crate::digest::{canonical_json, sha256};
use crate::rootfs::{CA_BUNDLE, Entry, Kind};
use crate::spec::{Image, NONROOT};

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("OCI document: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("no OCI architecture for {0}")]
    Arch(String),
}

fn io(path: &str) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.into(),
        source,
    }
}

/// A compressed layer and the two digests the image documents name it by.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The gzip-compressed tar (the blob).
    pub gz: Vec<u8>,
    /// sha256 of `gz`: the manifest's layer digest.
    pub digest: String,
    /// sha256 of the uncompressed tar: the config's `rootfs.diff_ids`.
    pub diff_id: String,
}

fn header(
    kind: tar::EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: u64,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_size(size);
    h.set_mtime(mtime);
    h
}

/// The layer tar of `entries`, gzip-compressed, with every mtime set to `mtime`.
pub fn layer(entries: &[Entry], mtime: u64) -> Result<Layer, ArchiveError> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        match &e.kind {
            Kind::Dir => {
                let mut h = header(tar::EntryType::Directory, e.mode, e.uid, e.gid, 0, mtime);
                tar.append_data(&mut h, format!("{}/", e.path), std::io::empty())
            }
            Kind::File(data) => {
                let mut h = header(
                    tar::EntryType::Regular,
                    e.mode,
                    e.uid,
                    e.gid,
                    data.len() as u64,
                    mtime,
                );
                tar.append_data(&mut h, &e.path, data.as_slice())
            }
        }
        .map_err(io(&e.path))?;
    }
    let raw = tar.into_inner().map_err(io("layer"))?;
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    gz.write_all(&raw).map_err(io("layer"))?;
    let gz = gz.finish().map_err(io("layer"))?;
    Ok(Layer {
        digest: sha256(&gz),
        diff_id: sha256(&raw),
        gz,
    })
}

/// The OCI architecture of the machine the binaries were built on.
pub fn host_arch() -> Result<Arch, ArchiveError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(Arch::Amd64),
        "aarch64" => Ok(Arch::ARM64),
        other => Err(ArchiveError::Arch(other.into())),
    }
}

/// What the image is built from besides its root filesystem.
#[derive(Debug, Clone)]
pub struct Meta {
    pub version: String,
    pub revision: String,
    pub arch: Arch,
    /// Seconds since the epoch for tar mtimes and `created` (SOURCE_DATE_EPOCH, else 0 and no
    /// `created`), so rebuilding the same commit gives the same digests.
    pub epoch: Option<u64>,
}

fn rfc3339(secs: u64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm): UTC date of a Unix time, no time crate.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The image config: entrypoint at the fixed path, user 65532:65532, OCI labels, one layer.
pub fn config(
    image: &Image,
    meta: &Meta,
    layer: &Layer,
) -> Result<ImageConfiguration, ArchiveError> {
    let labels: HashMap<String, String> = image
        .labels(&meta.version, &meta.revision)
        .into_iter()
        .collect();
    let cfg = ConfigBuilder::default()
        .user(format!("{NONROOT}:{NONROOT}"))
        .entrypoint(vec![image.binary_path()])
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            format!("SSL_CERT_FILE={CA_BUNDLE}"),
        ])
        .working_dir("/")
        .labels(labels)
        .build()?;
    let mut history = HistoryBuilder::default().created_by(format!(
        "xtask images: {} {} ({})",
        image.name, meta.version, meta.revision
    ));
    let mut b = ImageConfigurationBuilder::default();
    if let Some(epoch) = meta.epoch {
        history = history.created(rfc3339(epoch));
        b = b.created(rfc3339(epoch));
    }
    Ok(b.architecture(meta.arch.clone())
        .os(Os::Linux)
        .config(cfg)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![layer.diff_id.clone()])
                .build()?,
        )
        .history(vec![history.build()?])
        .build()?)
}

fn descriptor(media_type: MediaType, data: &[u8]) -> Result<Descriptor, ArchiveError> {
    Ok(Descriptor::new(
        media_type,
        data.len() as u64,
        Digest::from_str(&sha256(data))?,
    ))
}

/// A finished archive.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    /// The manifest digest (what `skopeo inspect` reports as Digest).
    pub manifest_digest: String,
    pub reference: String,
}

/// Writes `<out_dir>/<name>-<version>.oci.tar` holding `entries` as the image's only layer.
pub fn write(
    image: &Image,
    meta: &Meta,
    entries: &[Entry],
    out_dir: &Path,
) -> Result<Built, ArchiveError> {
    let mtime = meta.epoch.unwrap_or(0);
    let layer = layer(entries, mtime)?;
    let config_json = canonical_json(&config(image, meta, &layer)?)?;
    let config_desc = descriptor(MediaType::ImageConfig, &config_json)?;
    let layer_desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageLayerGzip)
        .size(layer.gz.len() as u64)
        .digest(Digest::from_str(&layer.digest)?)
        .build()?;
    let annotations: HashMap<String, String> = image
        .labels(&meta.version, &meta.revision)
        .into_iter()
        .collect();
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(vec![layer_desc])
        .annotations(annotations)
        .build()?;
    let manifest_json = canonical_json(&manifest)?;
    let reference = image.reference(&meta.version);
    // containerd's importer names the image after `io.containerd.image.name` (the full
    // reference) and skopeo's oci-archive transport finds it by `ref.name` (the tag); both are
    // what containerd's own exporter writes.
    let index_annotations: HashMap<String, String> = [
        ("io.containerd.image.name".to_string(), reference.clone()),
        (
            "org.opencontainers.image.ref.name".to_string(),
            meta.version.clone(),
        ),
    ]
    .into_iter()
    .collect();
    let mut manifest_desc = descriptor(MediaType::ImageManifest, &manifest_json)?;
    manifest_desc.set_annotations(Some(index_annotations));
    manifest_desc.set_platform(Some(
        oci_spec::image::PlatformBuilder::default()
            .architecture(meta.arch.clone())
            .os(Os::Linux)
            .build()?,
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_desc])
        .build()?;
    let index_json = canonical_json(&index)?;
    let layout_json = canonical_json(
        &OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()?,
    )?;

    std::fs::create_dir_all(out_dir).map_err(io(&out_dir.display().to_string()))?;
    let path = image.archive_path(out_dir, &meta.version);
    let tmp = path.with_extension("tar.tmp");
    let tmp_name = tmp.display().to_string();
    let file = std::fs::File::create(&tmp).map_err(io(&tmp_name))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut add = |name: &str, data: Option<&[u8]>| {
        let (kind, mode, data) = match data {
            Some(d) => (tar::EntryType::Regular, 0o644, d),
            None => (tar::EntryType::Directory, 0o755, &[][..]),
        };
        let mut h = header(kind, mode, 0, 0, data.len() as u64, mtime);
        tar.append_data(&mut h, name, data).map_err(io(&tmp_name))
    };
    add("oci-layout", Some(&layout_json))?;
    add("index.json", Some(&index_json))?;
    add("blobs/", None)?;
    add("blobs/sha256/", None)?;
    for data in [&manifest_json[..], &config_json[..], &layer.gz[..]] {
        let digest = sha256(data);
        add(
            &format!("blobs/sha256/{}", &digest["sha256:".len()..]),
            Some(data),
        )?;
    }
    let writer = tar.into_inner().map_err(io(&tmp_name))?;
    writer
        .into_inner()
        .map_err(|e| io(&tmp_name)(e.into_error()))?
        .sync_all()
        .map_err(io(&tmp_name))?;
    std::fs::rename(&tmp, &path).map_err(io(&path.display().to_string()))?;
    Ok(Built {
        path,
        manifest_digest: sha256(&manifest_json),
        reference,
    })
}

#[cfg(test)]
mod tests;
