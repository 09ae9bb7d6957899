//! The stored-message record: RocketMQ's commit-log layout, which is also the body of
//! pull, query, view and check-transaction responses.
//!
//! ```text
//!  off  size  field                       (IPv4 born/store hosts; each IPv6 host adds 12)
//!    0     4  TOTALSIZE                   whole record, this field included
//!    4     4  MAGICCODE                   0xDAA320A7 (v1) | 0xDAA320AB (v2, 2-byte topic length)
//!    8     4  BODYCRC                     crc32(body) & 0x7FFFFFFF
//!   12     4  QUEUEID
//!   16     4  FLAG                        user flag
//!   20     8  QUEUEOFFSET                 consume-queue logical offset
//!   28     8  PHYSICALOFFSET              commit-log offset of this record
//!   36     4  SYSFLAG                     bit 0x10: born host is IPv6, 0x20: store host is IPv6
//!   40     8  BORNTIMESTAMP
//!   48   4+4  BORNHOST                    ip (4 | 16 bytes) + port i32
//!   56     8  STORETIMESTAMP
//!   64   4+4  STOREHOSTADDRESS            ip (4 | 16 bytes) + port i32
//!   72     4  RECONSUMETIMES
//!   76     8  PREPARED_TRANSACTION_OFFSET
//!   84   4+n  BODY_LENGTH + BODY
//!     1|2 +t  TOPIC_LENGTH + TOPIC        1 byte in v1 (topic <= 127 bytes), 2 in v2
//!      2 +p  PROPERTIES_LENGTH + PROPERTIES
//! ```
//! All integers are big-endian. A v1 record with IPv4 hosts is `91 + body + topic +
//! properties` bytes. In a commit-log segment an 8-byte BLANK entry (`TOTALSIZE` =
//! bytes left in the segment, magic `0xCBD43194`) marks the end of the file.
//!
//! We always write v1 records (4.9 clients only read v1) and read both versions.
//! Decoding borrows: [`RecordView`] reads fields in place and [`MessageExt::decode`]
//! slices the body out of a shared `Bytes` without copying.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes};

use crate::error::{DecodeError, Result};
use crate::hash::body_crc;
use crate::message::MessageExt;
use crate::properties::{Properties, MAX_PROPERTIES_LEN};
use crate::sysflag::message as sysflag;

pub const MAGIC_V1: u32 = 0xDAA3_20A7;
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
pub const BLANK_MAGIC: u32 = 0xCBD4_3194;
/// Size of the end-of-segment blank marker.
pub const BLANK_LEN: usize = 8;
/// Longest topic a v1 record can hold.
pub const MAX_TOPIC_LEN_V1: usize = 127;

/// Absolute positions of fixed fields (valid for every host kind).
pub mod pos {
    pub const TOTAL_SIZE: usize = 0;
    pub const MAGIC: usize = 4;
    pub const BODY_CRC: usize = 8;
    pub const QUEUE_ID: usize = 12;
    pub const FLAG: usize = 16;
    pub const QUEUE_OFFSET: usize = 20;
    pub const PHYSICAL_OFFSET: usize = 28;
    pub const SYS_FLAG: usize = 36;
    pub const BORN_TIMESTAMP: usize = 40;
    pub const BORN_HOST: usize = 48;
}

/// Bytes of a record before `BODY_LENGTH` for the given host kinds.
const fn fixed_len(born_v6: bool, store_v6: bool) -> usize {
    84 + if born_v6 { 12 } else { 0 } + if store_v6 { 12 } else { 0 }
}

/// Smallest possible record: IPv4 hosts, v1, empty body/topic/properties.
pub const MIN_RECORD_LEN: usize = fixed_len(false, false) + 4 + 1 + 2;

/// Position of `STORETIMESTAMP` in a record with this `sys_flag`.
pub fn store_timestamp_pos(sys_flag: i32) -> usize {
    pos::BORN_HOST + host_len(sys_flag & sysflag::BORNHOST_V6 != 0)
}

/// Position of `STOREHOSTADDRESS` in a record with this `sys_flag`.
pub fn store_host_pos(sys_flag: i32) -> usize {
    store_timestamp_pos(sys_flag) + 8
}

fn host_len(v6: bool) -> usize {
    if v6 {
        20
    } else {
        8
    }
}

/// Why a record cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("topic is {0} bytes; a stored record holds at most {MAX_TOPIC_LEN_V1}")]
    TopicTooLong(usize),
    #[error("properties are {0} bytes; a stored record holds at most {MAX_PROPERTIES_LEN}")]
    PropertiesTooLong(usize),
    #[error("body of {0} bytes is too large for a record")]
    BodyTooLarge(usize),
}

/// Everything needed to write one record; borrows the variable-length parts so the
/// commit-log writer can encode straight into a mapped segment.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    /// Host-kind bits (0x10, 0x20) are recomputed from the addresses on encode.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    /// The encoded properties string (see [`crate::properties`]).
    pub properties: &'a [u8],
    /// Precomputed body CRC; `None` computes it during encoding.
    pub body_crc: Option<u32>,
}

impl RecordRef<'_> {
    /// The `sys_flag` actually written: host-kind bits follow the addresses.
    pub fn effective_sys_flag(&self) -> i32 {
        let mut f = self.sys_flag & !(sysflag::BORNHOST_V6 | sysflag::STOREHOST_V6);
        if is_v6(&self.born_host) {
            f |= sysflag::BORNHOST_V6;
        }
        if is_v6(&self.store_host) {
            f |= sysflag::STOREHOST_V6;
        }
        f
    }

    /// Encoded size in bytes, after checking the limits of the v1 layout.
    ///
    /// # Errors
    /// The topic, properties or body exceed what the layout can describe.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        if self.topic.len() > MAX_TOPIC_LEN_V1 {
            return Err(EncodeError::TopicTooLong(self.topic.len()));
        }
        if self.properties.len() > MAX_PROPERTIES_LEN {
            return Err(EncodeError::PropertiesTooLong(self.properties.len()));
        }
        let len = fixed_len(is_v6(&self.born_host), is_v6(&self.store_host))
            + 4
            + self.body.len()
            + 1
            + self.topic.len()
            + 2
            + self.properties.len();
        if len > i32::MAX as usize {
            return Err(EncodeError::BodyTooLarge(self.body.len()));
        }
        Ok(len)
    }

    /// Writes the record into `dst` and returns the number of bytes written.
    ///
    /// # Errors
    /// As [`RecordRef::encoded_len`]; nothing is written then.
    ///
    /// # Panics
    /// If `dst` has less remaining capacity than [`RecordRef::encoded_len`] (a
    /// caller bug: the commit log reserves the space first).
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<usize, EncodeError> {
        let len = self.encoded_len()?;
        assert!(dst.remaining_mut() >= len, "record buffer too small");
        let crc = self.body_crc.unwrap_or_else(|| body_crc(self.body));
        dst.put_i32(len as i32);
        dst.put_u32(MAGIC_V1);
        dst.put_u32(crc);
        dst.put_i32(self.queue_id);
        dst.put_i32(self.flag);
        dst.put_i64(self.queue_offset);
        dst.put_i64(self.physical_offset);
        dst.put_i32(self.effective_sys_flag());
        dst.put_i64(self.born_timestamp);
        put_host(dst, &self.born_host);
        dst.put_i64(self.store_timestamp);
        put_host(dst, &self.store_host);
        dst.put_i32(self.reconsume_times);
        dst.put_i64(self.prepared_transaction_offset);
        dst.put_i32(self.body.len() as i32);
        dst.put_slice(self.body);
        dst.put_u8(self.topic.len() as u8);
        dst.put_slice(self.topic.as_bytes());
        dst.put_i16(self.properties.len() as i16);
        dst.put_slice(self.properties);
        Ok(len)
    }

    /// Encodes into a fresh buffer.
    ///
    /// # Errors
    /// As [`RecordRef::encoded_len`].
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut buf = bytes::BytesMut::with_capacity(self.encoded_len()?);
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

fn is_v6(addr: &SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none())
}

fn put_host<B: BufMut>(dst: &mut B, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(v4) => dst.put_slice(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => dst.put_slice(&v4.octets()),
            None => dst.put_slice(&v6.octets()),
        },
    }
    dst.put_i32(i32::from(addr.port()));
}

/// What sits at a position of a commit-log segment.
#[derive(Debug)]
pub enum Entry<'a> {
    Record(RecordView<'a>),
    /// End-of-segment filler of the given total size.
    Blank(usize),
}

/// Reads the entry at the start of `buf`, validating sizes, magic and (optionally)
/// the body CRC. This is what recovery uses to find the torn tail of a log.
///
/// # Errors
/// Any inconsistency: truncated data, unknown magic, a size that does not match the
/// fields, a CRC mismatch.
pub fn scan(buf: &[u8], check_crc: bool) -> Result<Entry<'_>> {
    if buf.len() < 8 {
        return Err(DecodeError::Truncated { needed: 8, available: buf.len() });
    }
    let magic = be_u32(buf, pos::MAGIC);
    if magic == BLANK_MAGIC {
        let size = be_i32(buf, pos::TOTAL_SIZE);
        if size < BLANK_LEN as i32 {
            return Err(DecodeError::BadSize { size: size.into(), min: BLANK_LEN, available: buf.len() });
        }
        return Ok(Entry::Blank(size as usize));
    }
    let view = RecordView::parse(buf)?;
    if check_crc {
        view.verify_crc()?;
    }
    Ok(Entry::Record(view))
}

/// How many records ahead of the one being read a scan should [`prefetch`]: enough to
/// overlap the misses, few enough that the CPU does not drop the requests.
pub const PREFETCH_AHEAD: usize = 6;

/// Asks the CPU to start loading the parts of a stored record that a parse and a
/// property lookup read — the header and the tail (topic and properties follow the
/// body) — so that a batch of records from the page cache misses in parallel instead of
/// one after the other. `record` is a whole record (exactly `TOTALSIZE` bytes); a hint
/// only, it never reads or faults.
#[inline]
pub fn prefetch(record: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = record.as_ptr();
        let len = record.len();
        for at in [0, 64, len.saturating_sub(128), len.saturating_sub(64)] {
            if at < len {
                // SAFETY: `at < len`, so the pointer is inside `record`; a prefetch has
                // no architectural effect (it never faults, reads or writes).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(at).cast::<i8>()) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = record;
}

/// A record decoded in place: fixed fields are read on demand, variable parts are
/// borrowed slices.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    buf: &'a [u8],
    sys_flag: i32,
    body: (usize, usize),
    topic: (usize, usize),
    properties: (usize, usize),
}

impl<'a> RecordView<'a> {
    /// Parses the record at the start of `buf` (which may extend beyond it).
    ///
    /// # Errors
    /// Truncated input, an unknown magic (including BLANK), or lengths that do not
    /// add up to `TOTALSIZE`.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < 8 {
            return Err(DecodeError::Truncated { needed: 8, available: buf.len() });
        }
        let total = be_i32(buf, pos::TOTAL_SIZE);
        let magic = be_u32(buf, pos::MAGIC);
        let topic_len_size = match magic {
            MAGIC_V1 => 1,
            MAGIC_V2 => 2,
            other => return Err(DecodeError::BadMagic(other)),
        };
        if total < MIN_RECORD_LEN as i32 || total as usize > buf.len() {
            return Err(DecodeError::BadSize { size: total.into(), min: MIN_RECORD_LEN, available: buf.len() });
        }
        let rec = &buf[..total as usize];
        let sys_flag = be_i32(rec, pos::SYS_FLAG);
        let body_len_pos = fixed_len(sys_flag & sysflag::BORNHOST_V6 != 0, sys_flag & sysflag::STOREHOST_V6 != 0);
        let mut cur = body_len_pos;
        let body_len = read_len(rec, &mut cur, 4, "body")?;
        let body = (cur, body_len);
        cur += body_len;
        let topic_len = read_len(rec, &mut cur, topic_len_size, "topic")?;
        let topic = (cur, topic_len);
        cur += topic_len;
        let props_len = read_len(rec, &mut cur, 2, "properties")?;
        let properties = (cur, props_len);
        cur += props_len;
        if cur != rec.len() {
            return Err(DecodeError::BadSize { size: total.into(), min: cur, available: buf.len() });
        }
        std::str::from_utf8(&rec[topic.0..topic.0 + topic.1]).map_err(|_| DecodeError::Utf8("topic"))?;
        Ok(Self { buf: rec, sys_flag, body, topic, properties })
    }

    /// The record's bytes, exactly `total_size` long.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    pub fn total_size(&self) -> usize {
        self.buf.len()
    }

    pub fn magic(&self) -> u32 {
        be_u32(self.buf, pos::MAGIC)
    }

    pub fn body_crc(&self) -> u32 {
        be_u32(self.buf, pos::BODY_CRC)
    }

    pub fn queue_id(&self) -> i32 {
        be_i32(self.buf, pos::QUEUE_ID)
    }

    pub fn flag(&self) -> i32 {
        be_i32(self.buf, pos::FLAG)
    }

    pub fn queue_offset(&self) -> i64 {
        be_i64(self.buf, pos::QUEUE_OFFSET)
    }

    pub fn physical_offset(&self) -> i64 {
        be_i64(self.buf, pos::PHYSICAL_OFFSET)
    }

    pub fn sys_flag(&self) -> i32 {
        self.sys_flag
    }

    pub fn born_timestamp(&self) -> i64 {
        be_i64(self.buf, pos::BORN_TIMESTAMP)
    }

    pub fn born_host(&self) -> SocketAddr {
        read_host(self.buf, pos::BORN_HOST, self.sys_flag & sysflag::BORNHOST_V6 != 0)
    }

    pub fn store_timestamp(&self) -> i64 {
        be_i64(self.buf, store_timestamp_pos(self.sys_flag))
    }

    pub fn store_host(&self) -> SocketAddr {
        read_host(self.buf, store_host_pos(self.sys_flag), self.sys_flag & sysflag::STOREHOST_V6 != 0)
    }

    pub fn reconsume_times(&self) -> i32 {
        be_i32(self.buf, store_host_pos(self.sys_flag) + host_len(self.sys_flag & sysflag::STOREHOST_V6 != 0))
    }

    pub fn prepared_transaction_offset(&self) -> i64 {
        be_i64(self.buf, store_host_pos(self.sys_flag) + host_len(self.sys_flag & sysflag::STOREHOST_V6 != 0) + 4)
    }

    pub fn body(&self) -> &'a [u8] {
        &self.buf[self.body.0..self.body.0 + self.body.1]
    }

    pub fn topic(&self) -> &'a str {
        // Validated as UTF-8 in `parse`.
        std::str::from_utf8(&self.buf[self.topic.0..self.topic.0 + self.topic.1]).unwrap_or_default()
    }

    /// The raw encoded properties.
    pub fn properties_raw(&self) -> &'a [u8] {
        &self.buf[self.properties.0..self.properties.0 + self.properties.1]
    }

    pub fn properties(&self) -> Properties {
        Properties::decode_bytes(self.properties_raw())
    }

    /// Byte range of the body inside the record (for zero-copy slicing).
    pub fn body_range(&self) -> std::ops::Range<usize> {
        self.body.0..self.body.0 + self.body.1
    }

    /// # Errors
    /// The stored CRC does not match the body.
    pub fn verify_crc(&self) -> Result<()> {
        let computed = body_crc(self.body());
        let stored = self.body_crc();
        if computed != stored {
            return Err(DecodeError::BodyCrc { stored, computed });
        }
        Ok(())
    }

    /// The broker-side message id of this record (see [`crate::msgid`]).
    pub fn offset_msg_id(&self) -> String {
        crate::msgid::offset_msg_id(self.store_host(), self.physical_offset())
    }
}

fn read_len(rec: &[u8], cur: &mut usize, width: usize, field: &'static str) -> Result<usize> {
    if *cur + width > rec.len() {
        return Err(DecodeError::Truncated { needed: *cur + width, available: rec.len() });
    }
    let len: i64 = match width {
        1 => i64::from(rec[*cur] as i8),
        2 => i64::from(i16::from_be_bytes([rec[*cur], rec[*cur + 1]])),
        _ => i64::from(be_i32(rec, *cur)),
    };
    *cur += width;
    if len < 0 || *cur as i64 + len > rec.len() as i64 {
        return Err(DecodeError::BadLength { field, len });
    }
    Ok(len as usize)
}

fn read_host(buf: &[u8], at: usize, v6: bool) -> SocketAddr {
    if v6 {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&buf[at..at + 16]);
        SocketAddr::new(Ipv6Addr::from(octets).into(), be_i32(buf, at + 16) as u16)
    } else {
        let ip = Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3]);
        SocketAddr::new(ip.into(), be_i32(buf, at + 4) as u16)
    }
}

#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn be_u32(b: &[u8], at: usize) -> u32 {
    be_i32(b, at) as u32
}

#[inline]
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Overwrites `QUEUEOFFSET` of an encoded record.
pub fn set_queue_offset(record: &mut [u8], value: i64) {
    record[pos::QUEUE_OFFSET..pos::QUEUE_OFFSET + 8].copy_from_slice(&value.to_be_bytes());
}

/// Overwrites `PHYSICALOFFSET` of an encoded record.
pub fn set_physical_offset(record: &mut [u8], value: i64) {
    record[pos::PHYSICAL_OFFSET..pos::PHYSICAL_OFFSET + 8].copy_from_slice(&value.to_be_bytes());
}

/// Overwrites `STORETIMESTAMP` of an encoded record.
pub fn set_store_timestamp(record: &mut [u8], value: i64) {
    let at = store_timestamp_pos(be_i32(record, pos::SYS_FLAG));
    record[at..at + 8].copy_from_slice(&value.to_be_bytes());
}

/// Writes an end-of-segment blank marker of `size` bytes (only the first 8 carry data).
pub fn write_blank(dst: &mut [u8], size: usize) {
    dst[0..4].copy_from_slice(&(size as i32).to_be_bytes());
    dst[4..8].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
}

/// Decodes every record in a pull/query body (records back to back).
///
/// # Errors
/// The first malformed record stops decoding.
pub fn decode_all(buf: &Bytes, check_crc: bool) -> Result<Vec<MessageExt>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let msg = MessageExt::decode(&buf.slice(at..), check_crc)?;
        at += msg.store_size as usize;
        out.push(msg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample<'a>(body: &'a [u8], props: &'a [u8]) -> RecordRef<'a> {
        RecordRef {
            topic: "TopicTest",
            queue_id: 3,
            flag: 7,
            queue_offset: 57,
            physical_offset: 4096,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "192.168.0.9:54321".parse().unwrap(),
            store_timestamp: 1_700_000_000_123,
            store_host: "192.168.0.1:10911".parse().unwrap(),
            reconsume_times: 2,
            prepared_transaction_offset: 0,
            body,
            properties: props,
            body_crc: None,
        }
    }

    #[test]
    fn ipv4_layout_matches_rocketmq_positions() {
        let props = b"TAGS\x01TagA";
        let rec = sample(b"hello", props).to_bytes().unwrap();
        assert_eq!(rec.len(), 91 + 5 + 9 + props.len());
        assert_eq!(be_i32(&rec, 0) as usize, rec.len());
        assert_eq!(be_u32(&rec, 4), MAGIC_V1);
        assert_eq!(be_u32(&rec, 8), body_crc(b"hello"));
        assert_eq!(be_i64(&rec, 20), 57);
        assert_eq!(be_i64(&rec, 28), 4096);
        assert_eq!(be_i64(&rec, 40), 1_700_000_000_000);
        assert_eq!(&rec[48..52], &[192, 168, 0, 9]);
        assert_eq!(be_i32(&rec, 52), 54321);
        assert_eq!(be_i64(&rec, 56), 1_700_000_000_123);
        assert_eq!(&rec[64..68], &[192, 168, 0, 1]);
        assert_eq!(be_i32(&rec, 72), 2);
        assert_eq!(be_i32(&rec, 84), 5);
        assert_eq!(&rec[88..93], b"hello");
        assert_eq!(rec[93], 9);
    }

    #[test]
    fn ipv6_hosts_set_flags_and_widen_fields() {
        let mut r = sample(b"x", b"");
        r.born_host = "[2001:db8::1]:1234".parse().unwrap();
        r.store_host = "[2001:db8::2]:10911".parse().unwrap();
        let rec = r.to_bytes().unwrap();
        assert_eq!(rec.len(), 91 + 24 + 1 + 9);
        let v = RecordView::parse(&rec).unwrap();
        assert_eq!(v.sys_flag() & (sysflag::BORNHOST_V6 | sysflag::STOREHOST_V6), 0x30);
        assert_eq!(v.born_host(), r.born_host);
        assert_eq!(v.store_host(), r.store_host);
        assert_eq!(v.store_timestamp(), r.store_timestamp);
        assert_eq!(v.reconsume_times(), 2);
        assert_eq!(v.offset_msg_id().len(), 56);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_written_as_ipv4() {
        let mut r = sample(b"x", b"");
        r.born_host = "[::ffff:10.0.0.1]:80".parse().unwrap();
        let rec = r.to_bytes().unwrap();
        let v = RecordView::parse(&rec).unwrap();
        assert_eq!(v.sys_flag() & sysflag::BORNHOST_V6, 0);
        assert_eq!(v.born_host(), "10.0.0.1:80".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn setters_patch_in_place() {
        let mut r = sample(b"body", b"");
        r.born_host = "[2001:db8::1]:1".parse().unwrap();
        let mut rec = r.to_bytes().unwrap().to_vec();
        set_queue_offset(&mut rec, 9);
        set_physical_offset(&mut rec, 10);
        set_store_timestamp(&mut rec, 11);
        let v = RecordView::parse(&rec).unwrap();
        assert_eq!((v.queue_offset(), v.physical_offset(), v.store_timestamp()), (9, 10, 11));
        assert_eq!(v.body(), b"body");
    }

    #[test]
    fn crc_mismatch_is_detected_only_when_asked() {
        let mut rec = sample(b"payload", b"").to_bytes().unwrap().to_vec();
        let body_at = 88;
        rec[body_at] ^= 0xFF;
        assert!(matches!(scan(&rec, false), Ok(Entry::Record(_))));
        assert!(matches!(scan(&rec, true), Err(DecodeError::BodyCrc { .. })));
    }

    #[test]
    fn blank_marker_is_recognised() {
        let mut seg = vec![0u8; 64];
        write_blank(&mut seg, 64);
        assert!(matches!(scan(&seg, true), Ok(Entry::Blank(64))));
    }

    #[test]
    fn v2_magic_with_two_byte_topic_length_is_read() {
        let v1 = sample(b"b", b"").to_bytes().unwrap();
        // Rebuild as v2: same bytes but a 2-byte topic length.
        let topic_len_at = 88 + 1;
        let mut v2 = Vec::new();
        v2.extend_from_slice(&v1[..topic_len_at]);
        v2.extend_from_slice(&(9i16).to_be_bytes());
        v2.extend_from_slice(&v1[topic_len_at + 1..]);
        let total = v2.len() as i32;
        v2[0..4].copy_from_slice(&total.to_be_bytes());
        v2[4..8].copy_from_slice(&MAGIC_V2.to_be_bytes());
        let v = RecordView::parse(&v2).unwrap();
        assert_eq!(v.topic(), "TopicTest");
        assert_eq!(v.body(), b"b");
    }

    #[test]
    fn limits_are_enforced() {
        let long_topic = "t".repeat(128);
        let mut r = sample(b"", b"");
        r.topic = &long_topic;
        assert_eq!(r.encoded_len(), Err(EncodeError::TopicTooLong(128)));
        let props = vec![b'a'; MAX_PROPERTIES_LEN + 1];
        let r = sample(b"", &props);
        assert!(matches!(r.encoded_len(), Err(EncodeError::PropertiesTooLong(_))));
    }

    #[test]
    fn truncated_records_are_errors() {
        let rec = sample(b"payload", b"K\x01V").to_bytes().unwrap();
        for cut in 0..rec.len() {
            assert!(RecordView::parse(&rec[..cut]).is_err(), "cut at {cut}");
        }
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(Ipv4Addr::from(ip).into(), p)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_filter("not v4-mapped", |(ip, _)| Ipv6Addr::from(*ip).to_ipv4_mapped().is_none())
                .prop_map(|(ip, p)| SocketAddr::new(Ipv6Addr::from(ip).into(), p)),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            topic in "[A-Za-z0-9_%|-]{1,127}",
            queue_id in any::<i32>(), flag in any::<i32>(),
            queue_offset in any::<i64>(), physical_offset in any::<i64>(),
            sys_flag in any::<i32>(), born_ts in any::<i64>(), store_ts in any::<i64>(),
            born in addr(), store in addr(),
            reconsume in any::<i32>(), prepared in any::<i64>(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            props in "[A-Z]{1,5}\u{1}[a-z]{1,5}(\u{2}[A-Z]{1,5}\u{1}[a-z]{1,5}){0,3}",
        ) {
            let r = RecordRef {
                topic: &topic, queue_id, flag, queue_offset, physical_offset, sys_flag,
                born_timestamp: born_ts, born_host: born, store_timestamp: store_ts, store_host: store,
                reconsume_times: reconsume, prepared_transaction_offset: prepared,
                body: &body, properties: props.as_bytes(), body_crc: None,
            };
            let bytes = r.to_bytes().unwrap();
            let v = RecordView::parse(&bytes).unwrap();
            v.verify_crc().unwrap();
            prop_assert_eq!(v.topic(), topic.as_str());
            prop_assert_eq!(v.queue_id(), queue_id);
            prop_assert_eq!(v.flag(), flag);
            prop_assert_eq!(v.queue_offset(), queue_offset);
            prop_assert_eq!(v.physical_offset(), physical_offset);
            prop_assert_eq!(v.sys_flag(), r.effective_sys_flag());
            prop_assert_eq!(v.born_timestamp(), born_ts);
            prop_assert_eq!(v.born_host(), born);
            prop_assert_eq!(v.store_timestamp(), store_ts);
            prop_assert_eq!(v.store_host(), store);
            prop_assert_eq!(v.reconsume_times(), reconsume);
            prop_assert_eq!(v.prepared_transaction_offset(), prepared);
            prop_assert_eq!(v.body(), &body[..]);
            prop_assert_eq!(v.properties_raw(), props.as_bytes());

            let owned = MessageExt::decode(&bytes, true).unwrap();
            let again = owned.to_record_bytes().unwrap();
            prop_assert_eq!(again, bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = scan(&data, true);
            let _ = MessageExt::decode(&Bytes::from(data.clone()), true);
            let _ = decode_all(&Bytes::from(data), false);
        }

        #[test]
        fn mutated_records_never_panic(idx in 0usize..200, val in any::<u8>()) {
            let mut rec = sample(b"some body bytes", b"TAGS\x01TagA\x02KEYS\x01k").to_bytes().unwrap().to_vec();
            let i = idx % rec.len();
            rec[i] = val;
            let _ = scan(&rec, true);
            let _ = MessageExt::decode(&Bytes::from(rec), false);
        }
    }
}
