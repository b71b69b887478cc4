//! Where a connection may send a request: under its own base URL, to an address that is not
//! private, loopback, link-local or otherwise internal (unless the connection allows private
//! addresses), and nowhere else. The host is resolved here, checked, and the client connects to
//! the checked addresses only, so DNS cannot answer differently between the check and the
//! connection (DNS rebinding). Shared by `http.request` and `webhook.post`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::StepError;

/// The URL a step's `path` names under a connection's `base_url`, or why it may not be used.
///
/// `path` starts with `/` and is appended to the base URL's path (a base of
/// `https://api.example.com/v1` and a path of `/users` give `https://api.example.com/v1/users`).
/// The result must keep the base's scheme, host and port and stay below its path: `..`
/// segments (also percent-encoded), encoded slashes and backslashes, which some servers decode
/// into a way out, are refused.
pub fn join(base_url: &str, path: &str) -> Result<Url, StepError> {
    let base = Url::parse(base_url).map_err(|e| StepError::Input(format!("the connection's base URL: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
        return Err(StepError::Input("the connection's base URL is not an http(s) URL with a host".into()));
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(StepError::Input("the connection's base URL may not carry credentials".into()));
    }
    if !path.starts_with('/') {
        return Err(StepError::Input(format!("path {path:?} does not start with /")));
    }
    let lower = path.to_ascii_lowercase();
    if path.contains('\\') || path.contains('#') || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e)) {
        return Err(StepError::Forbidden(format!("path {path:?} may not contain encoded dots or slashes, \\ or #")));
    }
    let prefix = base.path().trim_end_matches('/');
    let mut joined = base.clone();
    joined.set_query(None);
    joined.set_fragment(None);
    let (path_part, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let joined = Url::parse(&format!(
        "{}{prefix}{path_part}{}",
        origin_of(&joined),
        query.map(|q| format!("?{q}")).unwrap_or_default()
    ))
    .map_err(|e| StepError::Input(format!("path {path:?}: {e}")))?;
    let same_origin = joined.scheme() == base.scheme()
        && joined.host_str() == base.host_str()
        && joined.port_or_known_default() == base.port_or_known_default()
        && joined.username().is_empty()
        && joined.password().is_none();
    let below = joined.path() == prefix || joined.path().starts_with(&format!("{prefix}/"));
    if !same_origin || !below {
        return Err(StepError::Forbidden(format!("path {path:?} leaves the connection's base URL")));
    }
    Ok(joined)
}

/// `scheme://host[:port]` of `url`.
fn origin_of(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Why an address is internal (never reached without `allow_private`), or `None` for a
/// public one. IPv6 addresses that embed an IPv4 address (mapped, NAT64, 6to4) are judged by
/// the IPv4 address they reach.
pub fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() || a == 0 => "unspecified (\"this network\")",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, 16..=31, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "carrier-grade NAT (shared address space)",
        (192, 0, 0) => "IETF protocol assignments",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return internal_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    // 6to4 (2002::/16) reaches the IPv4 address in bits 16..48
    if s[0] == 0x2002 {
        return internal_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    Some(match s[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        // IPv4-compatible (deprecated ::a.b.c.d) and the rest of ::/96
        0 if s[1..6] == [0, 0, 0, 0, 0] => "IPv4-compatible (deprecated)",
        x if x & 0xfe00 == 0xfc00 => "unique local",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local (deprecated)",
        x if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// The checked addresses a URL's host resolves to, which the request connects to (and only
/// to). A host that cannot be resolved is unavailable (retried); a host with an internal
/// address among its answers is refused unless `allow_private`.
pub async fn resolve(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, StepError> {
    let port = url.port_or_known_default().ok_or_else(|| StepError::Input("the URL has no port".into()))?;
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(a)) => vec![SocketAddr::new(IpAddr::V4(a), port)],
        Some(url::Host::Ipv6(a)) => vec![SocketAddr::new(IpAddr::V6(a), port)],
        Some(url::Host::Domain(d)) => tokio::net::lookup_host((d, port))
            .await
            .map_err(|e| StepError::Unavailable(format!("resolving {d}: {e}")))?
            .collect(),
        None => return Err(StepError::Input("the URL has no host".into())),
    };
    if addrs.is_empty() {
        return Err(StepError::Unavailable(format!("{} resolves to no address", url.host_str().unwrap_or(""))));
    }
    check(url.host_str().unwrap_or(""), &addrs, allow_private)?;
    Ok(addrs)
}

/// Refuses `addrs` if one is internal and the connection does not allow private addresses.
pub fn check(host: &str, addrs: &[SocketAddr], allow_private: bool) -> Result<(), StepError> {
    if allow_private {
        return Ok(());
    }
    for a in addrs {
        if let Some(why) = internal(a.ip()) {
            return Err(StepError::Forbidden(format!(
                "{host} resolves to {} ({why}); the connection does not allow private addresses",
                a.ip()
            )));
        }
    }
    Ok(())
}

/// Builds the HTTP clients of playbook steps: no redirects, no proxies, a timeout, TLS with the
/// webpki roots, and DNS pinned to the addresses a step checked.
#[derive(Clone)]
pub struct HttpClients {
    tls: Arc<rustls::ClientConfig>,
    /// Per request, connecting included.
    pub timeout: Duration,
}

impl std::fmt::Debug for HttpClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClients").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl HttpClients {
    pub fn new(timeout: Duration) -> Result<Self, StepError> {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| StepError::Internal(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpClients { tls: Arc::new(tls), timeout })
    }

    /// A client that reaches `url`'s host at `addrs` only.
    pub fn pinned(&self, url: &Url, addrs: &[SocketAddr]) -> Result<reqwest::Client, StepError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .tls_backend_preconfigured((*self.tls).clone());
        if let Some(url::Host::Domain(d)) = url.host() {
            builder = builder.resolve_to_addrs(d, addrs);
        }
        builder.build().map_err(|e| StepError::Internal(format!("HTTP client: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_base_url() {
        let ok = [
            ("https://api.example.com", "/users", "https://api.example.com/users"),
            ("https://api.example.com/", "/users", "https://api.example.com/users"),
            ("https://api.example.com/v1", "/users/42", "https://api.example.com/v1/users/42"),
            ("https://api.example.com/v1/", "/users?x=1", "https://api.example.com/v1/users?x=1"),
            ("http://127.0.0.1:8080/hooks", "/", "http://127.0.0.1:8080/hooks/"),
            ("https://api.example.com/v1", "/a/./b", "https://api.example.com/v1/a/b"),
            ("https://api.example.com/v1", "/a/../b", "https://api.example.com/v1/b"),
            ("https://api.example.com/v1", "/@evil.example/x", "https://api.example.com/v1/@evil.example/x"),
            ("https://api.example.com", "//evil.example/x", "https://api.example.com//evil.example/x"),
            ("https://[2001:db8::1]:8443/api", "/x", "https://[2001:db8::1]:8443/api/x"),
        ];
        for (base, path, want) in ok {
            assert_eq!(join(base, path).unwrap().as_str(), want, "{base} + {path}");
        }
    }

    #[test]
    fn escapes_are_refused() {
        let refused = [
            ("https://api.example.com/v1", "/../admin", "leaves"),
            ("https://api.example.com/v1", "/a/../../admin", "leaves"),
            ("https://api.example.com/v1", "/%2e%2e/admin", "encoded"),
            ("https://api.example.com/v1", "/%2E%2e/admin", "encoded"),
            ("https://api.example.com/v1", "/..%2fadmin", "encoded"),
            ("https://api.example.com/v1", "/..\\admin", "encoded"),
            ("https://api.example.com/v1", "/x#frag", "encoded"),
            ("https://api.example.com/v1", "users", "does not start"),
            ("https://api.example.com/v1", "", "does not start"),
            ("ftp://files.example.com", "/x", "not an http"),
            ("https://user:pw@api.example.com", "/x", "credentials"),
            ("not a url", "/x", "base URL"),
        ];
        for (base, path, why) in refused {
            let e = join(base, path).unwrap_err();
            assert!(e.to_string().contains(why), "{base} + {path}: {e}");
        }
        // a sibling path sharing the prefix is not under it
        assert!(join("https://api.example.com/v1", "/../v10/x").is_err());
    }

    #[test]
    fn internal_addresses_are_named() {
        let table: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("loopback")),
            ("127.1.2.3", Some("loopback")),
            ("10.0.0.8", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("0.0.0.0", Some("unspecified (\"this network\")")),
            ("0.1.2.3", Some("unspecified (\"this network\")")),
            ("100.64.0.1", Some("carrier-grade NAT (shared address space)")),
            ("100.127.255.254", Some("carrier-grade NAT (shared address space)")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("reserved or broadcast")),
            ("198.18.0.1", Some("benchmarking")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fc00::1", Some("unique local")),
            ("fd12:3456::1", Some("unique local")),
            ("fe80::1", Some("link-local")),
            ("ff02::1", Some("multicast")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("64:ff9b::a9fe:a9fe", Some("link-local")),
            ("2002:c0a8:0101::1", Some("private")),
            ("::127.0.0.1", Some("IPv4-compatible (deprecated)")),
            // public
            ("93.184.216.34", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("8.8.8.8", None),
            ("2606:4700:4700::1111", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
        ];
        for (ip, want) in table {
            assert_eq!(internal(ip.parse().unwrap()), *want, "{ip}");
        }
    }

    #[test]
    fn private_addresses_pass_only_when_allowed() {
        let loopback = [SocketAddr::from(([127, 0, 0, 1], 80))];
        let e = check("localhost", &loopback, false).unwrap_err();
        assert!(matches!(e, StepError::Forbidden(_)), "{e}");
        assert!(e.to_string().contains("loopback"), "{e}");
        check("localhost", &loopback, true).unwrap();
        let mixed = [SocketAddr::from(([8, 8, 8, 8], 80)), SocketAddr::from(([10, 0, 0, 1], 80))];
        assert!(check("rebind.example", &mixed, false).is_err(), "one internal answer is enough to refuse");
        check("public.example", &[SocketAddr::from(([8, 8, 8, 8], 443))], false).unwrap();
    }

    #[tokio::test]
    async fn literal_hosts_are_checked_without_dns() {
        let url = Url::parse("http://127.0.0.1:9/x").unwrap();
        assert!(matches!(resolve(&url, false).await, Err(StepError::Forbidden(_))));
        assert_eq!(resolve(&url, true).await.unwrap(), vec![SocketAddr::from(([127, 0, 0, 1], 9))]);
        let url = Url::parse("http://[::1]:9/x").unwrap();
        assert!(matches!(resolve(&url, false).await, Err(StepError::Forbidden(_))));
        let url = Url::parse("http://localhost:9/x").unwrap();
        assert!(matches!(resolve(&url, false).await, Err(StepError::Forbidden(_))));
    }
}
