//! Remote address patterns, as RocketMQ's `RemoteAddressStrategyFactory` reads them:
//! blank (matches nothing), `*` (everything), one address, a comma list, a brace list
//! in the last part (`192.168.1.{1,2}`), and a range or wildcard in one IPv4 part
//! (`192.168.*.*`, `192.168.1.1-100`: the parts before it must match, that one part
//! must fall in the range, the parts after it are not looked at — RocketMQ's rule).
//! IPv6 addresses are matched in full (compressed or not); an IPv6 range or wildcard
//! covers its last group (`fe80:0:0:0:0:0:0:*`, `fe80:0:0:0:0:0:0:1-ff`).

use std::net::{IpAddr, Ipv6Addr};

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressPattern {
    /// Blank: no address.
    Never,
    /// `*`: every address.
    Any,
    /// One address, or a list.
    Exact(Vec<IpAddr>),
    /// IPv4 `head.lo-hi…`: the first `head.len()` octets equal `head`, the next is in
    /// `lo..=hi`.
    V4Range { head: Vec<u8>, lo: u8, hi: u8 },
    /// IPv6: the first seven groups equal `head`, the last is in `lo..=hi`.
    V6Range { head: [u16; 7], lo: u16, hi: u16 },
}

impl AddressPattern {
    /// Reads a pattern; the error names what is wrong, in RocketMQ's words where it
    /// has them.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self::Never);
        }
        if matches!(s, "*" | "*.*.*.*" | "*:*:*:*:*:*:*:*") {
            return Ok(Self::Any);
        }
        let bad = || format!("Netaddress examine Exception netaddress is {s}");
        if s.ends_with('}') {
            let sep = if s.contains(':') { ':' } else { '.' };
            let (prefix, last) = s.rsplit_once(sep).ok_or_else(bad)?;
            let inner = last.strip_prefix('{').and_then(|l| l.strip_suffix('}')).ok_or_else(bad)?;
            if sep == '.' && prefix.split('.').count() != 3 {
                return Err(bad());
            }
            let list = inner
                .split(',')
                .map(|item| format!("{prefix}{sep}{}", item.trim()).parse::<IpAddr>().map_err(|_| bad()))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::Exact(list));
        }
        if s.contains(',') {
            let list =
                s.split(',').map(|a| a.trim().parse::<IpAddr>().map_err(|_| bad())).collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::Exact(list));
        }
        if s.contains('*') || s.contains('-') {
            return if s.contains(':') { v6_range(s) } else { v4_range(s) };
        }
        s.parse::<IpAddr>().map(|a| Self::Exact(vec![a])).map_err(|_| bad())
    }

    /// Whether `addr` (a peer's address; IPv4-mapped IPv6 counts as IPv4) matches.
    pub fn matches(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        match self {
            Self::Never => false,
            Self::Any => true,
            Self::Exact(list) => list.iter().any(|a| a.to_canonical() == addr),
            Self::V4Range { head, lo, hi } => match addr {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    o[..head.len()] == head[..] && (*lo..=*hi).contains(&o[head.len()])
                }
                IpAddr::V6(_) => false,
            },
            Self::V6Range { head, lo, hi } => match addr {
                IpAddr::V6(v6) => {
                    let g = v6.segments();
                    g[..7] == head[..] && (*lo..=*hi).contains(&g[7])
                }
                IpAddr::V4(_) => false,
            },
        }
    }
}

fn v4_range(s: &str) -> Result<AddressPattern, String> {
    let bad = || format!("Netaddress examine scope Exception netaddress is {s}");
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return Err(bad());
    }
    let index = (1..4).find(|&i| parts[i] == "*" || parts[i].contains('-')).ok_or_else(bad)?;
    let (lo, hi) = range(parts[index], 255).map_err(|e| e.unwrap_or_else(bad))?;
    let head = parts[..index].iter().map(|p| p.parse::<u8>().map_err(|_| bad())).collect::<Result<Vec<_>, _>>()?;
    Ok(AddressPattern::V4Range { head, lo: lo as u8, hi: hi as u8 })
}

fn v6_range(s: &str) -> Result<AddressPattern, String> {
    let bad = || format!("Netaddress examine scope Exception netaddress is {s}");
    let (prefix, last) = s.rsplit_once(':').ok_or_else(bad)?;
    let (lo, hi) = range(last, 0xffff).map_err(|e| e.unwrap_or_else(bad))?;
    // The head, as an address with a zero last group (`::` allowed).
    let head: Ipv6Addr = format!("{prefix}:0").parse().map_err(|_| bad())?;
    let g = head.segments();
    let head = [g[0], g[1], g[2], g[3], g[4], g[5], g[6]];
    Ok(AddressPattern::V6Range { head, lo: lo as u16, hi: hi as u16 })
}

/// `*` (everything up to `max`) or `lo-hi` (decimal for IPv4, hex for IPv6).
fn range(part: &str, max: u32) -> Result<(u32, u32), Option<String>> {
    if part == "*" {
        return Ok((0, max));
    }
    if part.starts_with('-') {
        return Err(Some(format!("RangeRemoteAddressStrategy netaddress examine scope Exception value {part} ")));
    }
    let radix = if max == 255 { 10 } else { 16 };
    let (a, b) = part.split_once('-').ok_or(None)?;
    let (lo, hi) = (u32::from_str_radix(a, radix).map_err(|_| None)?, u32::from_str_radix(b, radix).map_err(|_| None)?);
    if lo > hi || hi > max {
        return Err(Some(format!(
            "RangeRemoteAddressStrategy netaddress examine scope Exception start is {a} , end is {b}"
        )));
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn matches(pattern: &str, addr: &str) -> bool {
        AddressPattern::parse(pattern).unwrap().matches(ip(addr))
    }

    #[test]
    fn blank_matches_nothing_and_star_everything() {
        for blank in ["", "  "] {
            assert!(!matches(blank, "127.0.0.1"));
        }
        for any in ["*", "*.*.*.*", "*:*:*:*:*:*:*:*"] {
            assert!(matches(any, "10.1.2.3") && matches(any, "::1"), "{any}");
        }
    }

    #[test]
    fn single_addresses_and_lists() {
        assert!(matches("192.168.0.1", "192.168.0.1"));
        assert!(!matches("192.168.0.1", "192.168.0.2"));
        assert!(matches("192.168.0.1,10.0.0.1", "10.0.0.1"));
        assert!(!matches("192.168.0.1,10.0.0.1", "10.0.0.2"));
        assert!(matches("192.168.1.{1,2}", "192.168.1.2"));
        assert!(!matches("192.168.1.{1,2}", "192.168.1.3"));
        // IPv6, compressed or not, and an IPv4 peer seen through an IPv6 socket.
        assert!(matches("fe80:0:0:0:0:0:0:1", "fe80::1"));
        assert!(matches("fe80::{1,2}", "fe80::2"));
        assert!(matches("127.0.0.1", "::ffff:127.0.0.1"));
    }

    #[test]
    fn ranges_and_wildcards_in_one_part() {
        assert!(matches("192.168.*.*", "192.168.200.9"));
        assert!(!matches("192.168.*.*", "192.169.0.1"));
        assert!(matches("192.168.1.1-100", "192.168.1.100"));
        assert!(!matches("192.168.1.1-100", "192.168.1.101"));
        assert!(!matches("192.168.1.1-100", "192.168.2.50"));
        assert!(matches("10.10.103.*", "10.10.103.255"));
        // RocketMQ compares only the first wildcard's part: the ones after it are free.
        assert!(matches("192.168.*.5", "192.168.7.6"));
        assert!(matches("192.168.1-3.*", "192.168.3.1"));
        assert!(!matches("192.168.1-3.*", "192.168.4.1"));
        assert!(matches("fe80:0:0:0:0:0:0:*", "fe80::abcd"));
        assert!(matches("fe80::1-ff", "fe80::a0"));
        assert!(!matches("fe80::1-ff", "fe80::100"));
        assert!(!matches("192.168.*.*", "fe80::1"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "192.168.*",
            "192.*",
            "192.168.1.-5",
            "192.168.1.100-1",
            "192.168.1.1-300",
            "300.1.1.1",
            "192.168.1.x",
            "a,b",
            "192.168.{1,2}",
            "192.168.1.{1,x}",
            "*.1.2.3",
        ] {
            assert!(AddressPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            AddressPattern::parse("192.168.*").unwrap_err(),
            "Netaddress examine scope Exception netaddress is 192.168.*"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panic(s in "\\PC{0,40}", a in proptest::prelude::any::<[u8; 4]>()) {
            if let Ok(p) = AddressPattern::parse(&s) {
                let _ = p.matches(IpAddr::from(a));
            }
        }

        #[test]
        fn pattern_like_text_never_panics(s in "[0-9*{},.:a-f-]{0,24}") {
            if let Ok(p) = AddressPattern::parse(&s) {
                let _ = p.matches(IpAddr::from([192, 168, 1, 1]));
            }
        }
    }
}
