//! SSRF protection: targets users choose (webhook receivers, model
//! servers, vendor APIs) must resolve to public addresses. The check runs
//! inside the HTTP client's resolver, so the connection goes to exactly the
//! addresses that were checked (no second lookup an attacker's DNS could
//! answer differently). Private ranges can be allowed by CIDR for tests and
//! local runs.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How the resolver's refusal reads; [`crate::failure`] recognises it by
/// this text (reqwest erases the error type).
pub const REFUSED: &str = "resolves only to internal addresses; refused";

/// One allowed network, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let network: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether `ip` is somewhere a webhook must not go by default: loopback,
/// private, link-local (cloud metadata lives there), CGNAT, multicast,
/// unspecified or broadcast.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1]))
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

#[derive(Debug, Clone, Default)]
pub struct TargetGuard {
    allowed: Arc<Vec<Cidr>>,
}

impl TargetGuard {
    pub fn new(allowed: Vec<Cidr>) -> Self {
        Self {
            allowed: Arc::new(allowed),
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allowed.iter().any(|c| c.contains(ip))
    }

    /// URLs naming an IP address skip DNS, so the resolver's check cannot
    /// see them; they are checked here instead. `Some(reason)` when refused.
    pub fn refuse_literal(&self, url: &str) -> Option<String> {
        let authority = url.split("://").nth(1)?.split(['/', '?', '#']).next()?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next()?,
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let ip: IpAddr = host.parse().ok()?;
        (!self.permits(ip)).then(|| format!("{ip} is an internal address; refused"))
    }

    /// Parses a comma-separated CIDR list, naming the first bad entry.
    pub fn from_list(list: &str) -> Result<Self, String> {
        let allowed = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Cidr::parse(s).ok_or_else(|| format!("{s:?} is not a CIDR such as 10.0.0.0/8")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(allowed))
    }
}

impl Resolve for TargetGuard {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = resolved.iter().copied().filter(|a| guard.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(format!("{host} {REFUSED}").into());
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_and_metadata_are_refused_unless_allowed() {
        let guard = TargetGuard::default();
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!guard.permits(ip(internal)), "{internal} must be refused");
        }
        assert!(guard.permits(ip("93.184.216.34")));
        assert!(guard.permits(ip("2606:4700::1111")));
        let local = TargetGuard::new(vec![Cidr::parse("127.0.0.0/8").unwrap()]);
        assert!(local.permits(ip("127.0.0.1")));
        assert!(!local.permits(ip("169.254.169.254")));
    }

    #[test]
    fn literal_internal_addresses_are_refused_before_any_request() {
        let guard = TargetGuard::default();
        assert!(guard.refuse_literal("http://127.0.0.1:9000/hook").is_some());
        assert!(
            guard
                .refuse_literal("http://169.254.169.254/latest/meta-data")
                .is_some()
        );
        assert!(guard.refuse_literal("http://[::1]:80/").is_some());
        assert!(guard.refuse_literal("https://hooks.example.com/in").is_none());
        assert!(guard.refuse_literal("https://93.184.216.34/in").is_none());
    }
}
