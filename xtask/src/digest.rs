//! sha256 content digests (`sha256:<hex>`) and the canonical JSON the OCI documents are hashed
//! as: keys sorted, so the same image always has the same digest (oci-spec keeps labels and
//! annotations in HashMaps, whose order changes from run to run).

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// `sha256:<lowercase hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    let sum = Sha256::digest(data);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in sum {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Recursively rebuilds every object with its keys in sorted order.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// Compact JSON of `value` with sorted keys.
pub fn canonical_json<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&sorted(serde_json::to_value(value)?))
}

#[cfg(test)]
mod tests;
