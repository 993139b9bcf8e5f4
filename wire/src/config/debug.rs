//! `Debug` for [`Options`] that never prints a secret: the API key, the NATS token, password and
//! nkey seed, and the `user:password@` part of the NATS URLs show only whether they are set, so
//! a `{:?}` in a log line or a `--check-config` dump cannot leak them.

use std::fmt;

use super::Options;

/// Shown instead of a secret value.
const REDACTED: &str = "<redacted>";

/// A secret option: `None`, or `Some(<redacted>)` without the value.
struct Secret<'a>(&'a Option<String>);

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some(_) => f
                .debug_tuple("Some")
                .field(&format_args!("{REDACTED}"))
                .finish(),
        }
    }
}

/// The NATS URL list with each URL's userinfo (`user:password@`, or a token as `token@`)
/// replaced, host and port kept since they are what one debugs.
struct NatsUrls<'a>(&'a Option<String>);

impl fmt::Debug for NatsUrls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some(urls) => f.debug_tuple("Some").field(&redact_userinfo(urls)).finish(),
        }
    }
}

/// `nats://u:p@h:4222,nats://h2` → `nats://<redacted>@h:4222,nats://h2`. The userinfo ends at
/// the last `@` of the authority (RFC 3986 §3.2: the authority ends at the first `/`, `?` or `#`
/// after `//`); a URL without `//` is taken as a bare authority.
pub(super) fn redact_userinfo(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let start = url.find("//").map_or(0, |i| i + 2);
            let end = url[start..]
                .find(['/', '?', '#'])
                .map_or(url.len(), |i| start + i);
            match url[start..end].rfind('@') {
                Some(at) => format!("{}{REDACTED}{}", &url[..start], &url[start + at..]),
                None => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so an option added to the type but not here does not compile.
        let Options {
            listen,
            admin_addr,
            shards,
            flush_interval,
            max_pending_bytes,
            max_connections,
            max_subscriptions_per_connection,
            max_message_bytes,
            handshake_timeout,
            max_header_bytes,
            ping_interval,
            drain_timeout,
            allowed_origins,
            api_key,
            max_publish_bytes,
            engine,
            nats,
            nats_credentials,
            subject_prefix,
            nats_token,
            nats_user,
            nats_password,
            nats_nkey,
            nats_tls,
            nats_tls_ca,
            nats_tls_cert,
            nats_tls_key,
            subscription_linger,
            stats_interval,
            auth,
            max_client_messages_per_second,
            max_connections_per_ip,
            pod_name,
            pod_namespace,
            cluster,
            history_topics,
            history,
        } = self;
        f.debug_struct("Options")
            .field("listen", listen)
            .field("admin_addr", admin_addr)
            .field("shards", shards)
            .field("flush_interval", flush_interval)
            .field("max_pending_bytes", max_pending_bytes)
            .field("max_connections", max_connections)
            .field(
                "max_subscriptions_per_connection",
                max_subscriptions_per_connection,
            )
            .field("max_message_bytes", max_message_bytes)
            .field("handshake_timeout", handshake_timeout)
            .field("max_header_bytes", max_header_bytes)
            .field("ping_interval", ping_interval)
            .field("drain_timeout", drain_timeout)
            .field("allowed_origins", allowed_origins)
            .field("api_key", &Secret(api_key))
            .field("max_publish_bytes", max_publish_bytes)
            .field("engine", engine)
            .field("nats", &NatsUrls(nats))
            .field("nats_credentials", nats_credentials)
            .field("subject_prefix", subject_prefix)
            .field("nats_token", &Secret(nats_token))
            .field("nats_user", nats_user)
            .field("nats_password", &Secret(nats_password))
            .field("nats_nkey", &Secret(nats_nkey))
            .field("nats_tls", nats_tls)
            .field("nats_tls_ca", nats_tls_ca)
            .field("nats_tls_cert", nats_tls_cert)
            .field("nats_tls_key", nats_tls_key)
            .field("subscription_linger", subscription_linger)
            .field("stats_interval", stats_interval)
            .field("auth", auth)
            .field(
                "max_client_messages_per_second",
                max_client_messages_per_second,
            )
            .field("max_connections_per_ip", max_connections_per_ip)
            .field("pod_name", pod_name)
            .field("pod_namespace", pod_namespace)
            .field("cluster", cluster)
            .field("history_topics", history_topics)
            .field("history", history)
            .finish()
    }
}

#[cfg(test)]
mod tests;
