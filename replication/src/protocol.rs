//! The two messages of the HA transport (see the crate docs for the layout) and what
//! counts as a valid one.

/// A master's transfer header: offset (8) and size (4).
pub const HEADER_LEN: usize = 12;
/// A slave's report: its max offset.
pub const REPORT_LEN: usize = 8;

/// Offsets at or above this are not commit-log offsets (64 PiB of log): whatever sent
/// them is not a slave. Text — an HTTP request, a health check's probe — read as a
/// big-endian `i64` lands far above it, since any printable first byte does.
pub const MAX_PLAUSIBLE_OFFSET: i64 = 1 << 56;

/// Largest transfer a slave accepts: a master never sends more than one segment's
/// worth, and RocketMQ's segments are at most a few GiB.
pub const MAX_TRANSFER: usize = 1 << 30;

/// A transfer header.
pub fn header(offset: i64, size: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&offset.to_be_bytes());
    h[8..].copy_from_slice(&size.to_be_bytes());
    h
}

/// Parses a transfer header: (master offset, size).
pub fn parse_header(h: &[u8; HEADER_LEN]) -> (i64, i32) {
    let offset = i64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
    let size = i32::from_be_bytes(h[8..].try_into().expect("4 bytes"));
    (offset, size)
}

/// The size field of a confirm-offset header (controller mode, FerroMQ only): the
/// offset field carries the master's confirm offset and no data follows.
pub const CONFIRM: i32 = -1;

/// A confirm-offset header.
pub fn confirm(offset: i64) -> [u8; HEADER_LEN] {
    header(offset, CONFIRM as u32)
}

/// A slave's report.
pub fn report(offset: i64) -> [u8; REPORT_LEN] {
    offset.to_be_bytes()
}

/// The first report of a slave that names itself (controller mode, FerroMQ only):
/// `i64::MIN + broker_id`, a value no offset report can take, so a master that does
/// not expect it drops the connection rather than misread it.
pub fn identity(broker_id: u64) -> [u8; REPORT_LEN] {
    (i64::MIN + (broker_id as i64 & (MAX_PLAUSIBLE_OFFSET - 1))).to_be_bytes()
}

/// The broker id an identity report carries.
pub fn parse_identity(value: i64) -> Option<u64> {
    let id = value.checked_sub(i64::MIN)?;
    (0..MAX_PLAUSIBLE_OFFSET).contains(&id).then_some(id as u64)
}

/// Every complete report in `buf`, oldest first, and how many bytes they took.
pub fn reports(buf: &[u8]) -> (Vec<i64>, usize) {
    let whole = buf.len() - buf.len() % REPORT_LEN;
    let values =
        buf[..whole].chunks_exact(REPORT_LEN).map(|c| i64::from_be_bytes(c.try_into().expect("8 bytes"))).collect();
    (values, whole)
}

/// Whether `offset` can be a slave's report.
pub fn plausible(offset: i64) -> bool {
    (0..MAX_PLAUSIBLE_OFFSET).contains(&offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_in_network_order() {
        let h = header(0x0102_0304_0506_0708, 0x0A0B_0C0D);
        assert_eq!(h, [1, 2, 3, 4, 5, 6, 7, 8, 0x0A, 0x0B, 0x0C, 0x0D]);
        assert_eq!(parse_header(&h), (0x0102_0304_0506_0708, 0x0A0B_0C0D));
        assert_eq!(parse_header(&confirm(4096)), (4096, CONFIRM));
    }

    #[test]
    fn complete_reports_are_read_and_a_partial_one_waits() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&report(100));
        buf.extend_from_slice(&report(250));
        buf.extend_from_slice(&[0, 0, 0]);
        assert_eq!(reports(&buf), (vec![100, 250], 16));
        assert_eq!(reports(&buf[..7]), (vec![], 0));
    }

    #[test]
    fn an_identity_is_never_an_offset() {
        for id in [0u64, 1, 7, 1 << 40] {
            let v = i64::from_be_bytes(identity(id));
            assert!(!plausible(v));
            assert_eq!(parse_identity(v), Some(id));
        }
        assert_eq!(parse_identity(100), None);
        let mut buf = identity(3).to_vec();
        buf.extend_from_slice(&report(42));
        buf.push(9);
        let (values, used) = reports(&buf);
        assert_eq!((values.len(), used), (2, 16));
        assert_eq!((parse_identity(values[0]), values[1]), (Some(3), 42));
    }

    #[test]
    fn text_is_not_an_offset() {
        for probe in [b"GET / HTTP/1.1\r\n".as_slice(), b"\x16\x03\x01\x02\x00\x01\x00\x01", b"PING\r\n\r\n"] {
            let offset = *reports(probe).0.last().unwrap();
            assert!(!plausible(offset), "{probe:?} read as {offset}");
        }
        assert!(plausible(0) && plausible(1 << 40));
        assert!(!plausible(-1));
    }
}
