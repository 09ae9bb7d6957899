//! Message ids.
//!
//! * `offsetMsgId` (broker): uppercase hex of store-host IP (4 or 16 bytes) ‖ port
//!   (i32) ‖ commit-log offset (i64) — 32 or 56 characters. Clients decode it to find
//!   the broker and offset for VIEW_MESSAGE_BY_ID and END_TRANSACTION.
//! * `UNIQ_KEY` (producer): uppercase hex of IP ‖ pid (i16) ‖ a per-process random
//!   i32 (Java uses the class loader's hash) ‖ ms since the start of the current
//!   month (i32) ‖ a counter (i16). The broker treats it as opaque.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};

use crate::error::{DecodeError, Result};

/// Builds the offset message id of a record stored at `offset` on `store_host`.
pub fn offset_msg_id(store_host: SocketAddr, offset: i64) -> String {
    let mut bytes = Vec::with_capacity(28);
    push_ip(&mut bytes, store_host.ip());
    bytes.extend_from_slice(&i32::from(store_host.port()).to_be_bytes());
    bytes.extend_from_slice(&offset.to_be_bytes());
    hex_upper(&bytes)
}

/// Decodes an offset message id into (store host, commit-log offset).
///
/// # Errors
/// The id is not 32 or 56 hex characters.
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, i64)> {
    let bad = || DecodeError::BadMessageId(id.to_owned());
    let bytes = unhex(id).ok_or_else(bad)?;
    let ip_len = match bytes.len() {
        16 => 4,
        28 => 16,
        _ => return Err(bad()),
    };
    let ip: IpAddr = if ip_len == 4 {
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&bytes[..16]);
        Ipv6Addr::from(o).into()
    };
    let port = i32::from_be_bytes(bytes[ip_len..ip_len + 4].try_into().map_err(|_| bad())?);
    let offset = i64::from_be_bytes(bytes[ip_len + 4..ip_len + 12].try_into().map_err(|_| bad())?);
    Ok((SocketAddr::new(ip, port as u16), offset))
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => out.extend_from_slice(&v4.octets()),
            None => out.extend_from_slice(&v6.octets()),
        },
    }
}

/// Uppercase hex, as Java's `UtilAll.bytes2string`.
/// Every send response carries one, so this is a table lookup rather than `format!`.
pub fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0F)]);
    }
    // Only ASCII digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Generates `UNIQ_KEY` values for one producer process.
#[derive(Debug)]
pub struct UniqIdGenerator {
    prefix: String,
    month_start_ms: std::sync::atomic::AtomicI64,
    next_month_start_ms: std::sync::atomic::AtomicI64,
    counter: AtomicU16,
}

impl UniqIdGenerator {
    /// `ip` of this host, `pid` of this process, `salt` a random per-process value.
    pub fn new(ip: IpAddr, pid: u32, salt: i32) -> Self {
        let mut fixed = Vec::with_capacity(22);
        push_ip(&mut fixed, ip);
        fixed.extend_from_slice(&(pid as i16).to_be_bytes());
        fixed.extend_from_slice(&salt.to_be_bytes());
        Self {
            prefix: hex_upper(&fixed),
            month_start_ms: std::sync::atomic::AtomicI64::new(0),
            next_month_start_ms: std::sync::atomic::AtomicI64::new(0),
            counter: AtomicU16::new(0),
        }
    }

    /// A new id for a message created at `now_ms` (ms since the Unix epoch).
    pub fn next_id(&self, now_ms: i64) -> String {
        if now_ms >= self.next_month_start_ms.load(Ordering::Relaxed)
            || now_ms < self.month_start_ms.load(Ordering::Relaxed)
        {
            let (start, next) = crate::time::month_bounds(now_ms, 0);
            self.month_start_ms.store(start, Ordering::Relaxed);
            self.next_month_start_ms.store(next, Ordering::Relaxed);
        }
        let elapsed = (now_ms - self.month_start_ms.load(Ordering::Relaxed)) as i32;
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut tail = [0u8; 6];
        tail[..4].copy_from_slice(&elapsed.to_be_bytes());
        tail[4..].copy_from_slice(&count.to_be_bytes());
        let mut id = String::with_capacity(self.prefix.len() + 12);
        id.push_str(&self.prefix);
        id.push_str(&hex_upper(&tail));
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_msg_id_matches_rocketmq_example() {
        // 192.168.0.1:10911 @ 0x12F40 (from remoting-protocol.md §2.2)
        let id = offset_msg_id("192.168.0.1:10911".parse().unwrap(), 0x12F40);
        assert_eq!(id, "C0A8000100002A9F0000000000012F40");
        let (addr, off) = decode_offset_msg_id(&id).unwrap();
        assert_eq!(addr, "192.168.0.1:10911".parse::<SocketAddr>().unwrap());
        assert_eq!(off, 0x12F40);
    }

    #[test]
    fn ipv6_offset_msg_id_round_trips() {
        let a: SocketAddr = "[2001:db8::7]:10911".parse().unwrap();
        let id = offset_msg_id(a, 42);
        assert_eq!(id.len(), 56);
        assert_eq!(decode_offset_msg_id(&id).unwrap(), (a, 42));
    }

    #[test]
    fn bad_ids_are_rejected() {
        for bad in ["", "XYZ", "C0A8000100002A9F0000000000012F4", "ZZA8000100002A9F0000000000012F40"] {
            assert!(decode_offset_msg_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uniq_ids_are_32_hex_chars_and_distinct() {
        let g = UniqIdGenerator::new("10.0.0.5".parse().unwrap(), 4711, 0x1234_5678);
        let now = 1_700_000_000_000;
        let a = g.next_id(now);
        let b = g.next_id(now);
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.starts_with("0A0000051267" /* ip + pid 4711 = 0x1267 */));
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }

    #[test]
    fn month_bounds_are_exact() {
        // 2023-11-14T22:13:20Z -> 2023-11-01 .. 2023-12-01
        let (s, n) = crate::time::month_bounds(1_700_000_000_000, 0);
        assert_eq!(s, 1_698_796_800_000);
        assert_eq!(n, 1_701_388_800_000);
        // December rolls into next year: 2023-12-15 -> 2024-01-01
        let (_, n) = crate::time::month_bounds(1_702_598_400_000, 0);
        assert_eq!(n, 1_704_067_200_000);
    }
}
