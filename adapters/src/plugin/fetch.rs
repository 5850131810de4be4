//! The `http-client.fetch` import: outbound HTTP on a plugin's behalf, policed by its account.
//!
//! Order of checks: the URL parses and is `http` (HTTPS is not built in yet); its host is on the
//! account's allow-list; every address the name resolves to is public (unless the account allows
//! private ones); then the request goes out with the resolved addresses pinned (no second lookup a
//! DNS rebinding could exploit), no proxy, no redirects followed, within the fetch timeout and the
//! call's deadline, reading at most the response size cap.

use super::AccountConfig;
use super::host::bindings::hermes::provider::http_client::{FetchError, Request, Response};
use super::limits::PluginLimits;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// What one fetch did, for the host's bookkeeping.
pub(crate) struct FetchOutcome {
    pub(crate) result: Result<Response, FetchError>,
    /// The request may have reached the server (it was sent and did not fail to connect).
    pub(crate) left: bool,
}

impl FetchOutcome {
    fn refused(reason: String) -> Self {
        Self {
            result: Err(FetchError::Denied(reason)),
            left: false,
        }
    }
}

/// Answers a plugin's `fetch` in place of the network: see [`super::PluginEngine::with_fetch_stub`].
pub type FetchStub = Arc<dyn Fn(&StubRequest) -> StubResponse + Send + Sync>;

/// What a plugin asked to fetch, as a [`FetchStub`] sees it.
#[derive(Debug, Clone)]
pub struct StubRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A [`FetchStub`]'s answer.
#[derive(Debug, Clone)]
pub struct StubResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Answers the fetch with `stub` instead of the network, under the same allow-list (the address
/// checks are the network's and do not apply).
pub(crate) fn stubbed(account: &AccountConfig, stub: &FetchStub, request: Request) -> FetchOutcome {
    let host = reqwest::Url::parse(&request.url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned));
    match host {
        Some(host) if host_allowed(account, &host) => {}
        _ => {
            return FetchOutcome::refused(format!(
                "the host of {} is not allowed for account {}",
                request.url, account.name
            ));
        }
    }
    let answer = stub(&StubRequest {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
    });
    FetchOutcome {
        result: Ok(Response {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        }),
        left: true,
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast, documentation, benchmarking or reserved. IPv6 forms that
/// carry an IPv4 address a gateway or the host's stack may route to (IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4
/// address, so `64:ff9b::7f00:1` is as private as `127.0.0.1`. Teredo (`2001::/32`) and the rest
/// of the IETF protocol block `2001::/23` are refused outright.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

/// The IPv4 address an IPv6 address stands for, in the forms that translate to IPv4 traffic.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    match s {
        // IPv4-compatible (deprecated, RFC 4291 2.5.5.1); `::` and `::1` are judged as IPv6.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(low(hi, lo)),
        // NAT64 well-known prefix (RFC 6052).
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        // 6to4 (RFC 3056): the site's IPv4 address follows the prefix.
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside sites)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64, local-use 64:ff9b:1::/48 too
        // IETF protocol assignments (2001::/23): Teredo 2001::/32, whose relay would tunnel to an
        // (obfuscated) IPv4 address we cannot vet, benchmarking 2001:2::/48, ORCHID; no provider
        // API lives there.
        || (first == 0x2001 && ip.segments()[1] < 0x0200)
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)) // documentation
}

fn host_allowed(account: &AccountConfig, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    account.allowed_hosts.iter().any(|allowed| {
        let allowed = allowed.trim_end_matches('.').to_ascii_lowercase();
        match allowed.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == allowed,
        }
    })
}

pub(crate) async fn fetch(
    account: &AccountConfig,
    limits: &PluginLimits,
    request: Request,
    deadline: Instant,
) -> FetchOutcome {
    let url = match reqwest::Url::parse(&request.url) {
        Ok(url) => url,
        Err(err) => return FetchOutcome::refused(format!("invalid URL: {err}")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return FetchOutcome::refused(format!(
            "scheme {:?} is not supported (only http and https)",
            url.scheme()
        ));
    }
    let Some(host) = url.host_str().map(str::to_owned) else {
        return FetchOutcome::refused("the URL has no host".to_owned());
    };
    // `host_str` keeps IPv6 literals bracketed.
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if !host_allowed(account, &bare_host) {
        return FetchOutcome::refused(format!(
            "host {bare_host} is not allowed for account {}",
            account.name
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let timeout = limits.fetch_timeout.min(remaining);

    let addrs: Vec<SocketAddr> = match bare_host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((bare_host.as_str(), port)))
                .await
            {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(err)) => {
                    return FetchOutcome {
                        result: Err(FetchError::Connect(format!(
                            "could not resolve {bare_host}: {err}"
                        ))),
                        left: false,
                    };
                }
                Err(_) => {
                    return FetchOutcome {
                        result: Err(FetchError::Connect(format!(
                            "resolving {bare_host} took too long"
                        ))),
                        left: false,
                    };
                }
            }
        }
    };
    if addrs.is_empty() {
        return FetchOutcome {
            result: Err(FetchError::Connect(format!("{bare_host} has no address"))),
            left: false,
        };
    }
    if !account.allow_private
        && let Some(private) = addrs.iter().find(|a| !is_public_address(a.ip()))
    {
        return FetchOutcome::refused(format!(
            "{bare_host} resolves to the non-public address {}, which account {} may not reach",
            private.ip(),
            account.name
        ));
    }

    let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
        Ok(method) => method,
        Err(_) => return FetchOutcome::refused(format!("invalid method {:?}", request.method)),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &request.headers {
        let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) else {
            return FetchOutcome::refused(format!("invalid header {name:?}"));
        };
        headers.append(name, value);
    }
    // One client per fetch, so the addresses checked above are the ones connected to.
    let client = match crate::http::client_builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .resolve_to_addrs(&bare_host, &addrs)
        .build()
    {
        Ok(client) => client,
        Err(err) => return FetchOutcome::refused(format!("could not build the request: {err}")),
    };
    // A client span inside the provider call's span when that one is traced (see the saga);
    // the path but never the query, which may carry credentials.
    let span = if tracing::Span::current().is_none() {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "fetch",
            otel.name = %method,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            server.address = %bare_host,
            server.port = port,
            url.path = url.path(),
            http.response.status_code = tracing::field::Empty,
        )
    };
    let call = client
        .request(method, url)
        .headers(headers)
        .body(request.body)
        .send();
    let cap = limits.max_response_bytes;
    let exchange = async {
        let mut response = call.await?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Ok(Err(FetchError::TooLarge));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > cap {
                return Ok(Err(FetchError::TooLarge));
            }
            body.extend_from_slice(&chunk);
        }
        Ok::<_, reqwest::Error>(Ok(Response {
            status,
            headers,
            body,
        }))
    };
    let answered = tokio::time::timeout(timeout, exchange.instrument(span.clone())).await;
    match &answered {
        Ok(Ok(Ok(response))) => {
            span.record("http.response.status_code", response.status);
            if response.status >= 500 {
                span.record("otel.status_code", "ERROR");
            }
        }
        _ => {
            span.record("otel.status_code", "ERROR");
        }
    }
    match answered {
        Ok(Ok(result)) => FetchOutcome { result, left: true },
        Ok(Err(err)) if err.is_connect() => FetchOutcome {
            result: Err(FetchError::Connect(err.to_string())),
            left: false,
        },
        Ok(Err(err)) if err.is_builder() => {
            FetchOutcome::refused(format!("could not build the request: {err}"))
        }
        Ok(Err(err)) if err.is_timeout() => FetchOutcome {
            result: Err(FetchError::Timeout),
            left: true,
        },
        Ok(Err(err)) => FetchOutcome {
            result: Err(FetchError::Transport(err.to_string())),
            left: true,
        },
        Err(_) => FetchOutcome {
            result: Err(FetchError::Timeout),
            left: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            // IPv4 hiding in IPv6: compatible, NAT64, 6to4.
            "::127.0.0.1",
            "::10.0.0.1",
            "::169.254.169.254",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1.1.1.1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:a9fe:a9fe::1",
            // Site-local.
            "fec0::1",
            "feff::1",
            // Teredo (here around 127.0.0.1, obfuscated) and the rest of 2001::/23.
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001::1",
            "2001:2::1",
            "2001:1ff::1",
        ] {
            assert!(!is_public_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2001:200::1",
            // The same forms around a public IPv4 address stay public.
            "64:ff9b::1.1.1.1",
            "2002:101:101::1",
            "::1.1.1.1",
        ] {
            assert!(is_public_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn allow_list_matches_exact_names_and_subdomain_wildcards() {
        let account = AccountConfig {
            allowed_hosts: vec!["api.example.com".into(), "*.sms.test".into()],
            ..AccountConfig::default()
        };
        assert!(host_allowed(&account, "API.example.com"));
        assert!(host_allowed(&account, "eu.sms.test"));
        assert!(!host_allowed(&account, "sms.test"));
        assert!(!host_allowed(&account, "evilsms.test"));
        assert!(!host_allowed(&account, "example.com"));
        assert!(!host_allowed(&account, "api.example.com.evil.test"));
    }
}
