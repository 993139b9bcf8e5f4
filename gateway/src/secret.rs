//! Secrets in the configuration (API key, NATS token, password, nkey seed, passwords in NATS
//! URLs): kept as they are for use, but never shown by `Debug`, so `--check-config`, logs and
//! error messages cannot leak them.

use std::fmt;

/// What a secret looks like wherever it is printed.
pub const REDACTED: &str = "<redacted>";

/// A string that `Debug` and `Display` never reveal; [`Secret::expose`] gives it to the code
/// that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for handing to the library that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A comma-separated list of server URLs with any `user:password@` (or `token@`) part replaced,
/// so the list can be printed: `nats://alice:pw@host:4222` becomes `nats://<redacted>@host:4222`.
pub fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(redact_url)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{REDACTED}{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
