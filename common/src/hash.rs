//! Java-compatible hashes: RocketMQ stores `String.hashCode()` values on disk and in
//! subscriptions, so ours must match bit for bit.

/// Java's `String.hashCode()`: `h = 31 * h + c` over UTF-16 code units, wrapping.
///
/// Non-BMP characters count as two code units, exactly as in Java.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// The consume-queue "tags code" of a message: the Java hash of its `TAGS` property,
/// or 0 when the message has no tag.
pub fn tags_code(tags: Option<&str>) -> i64 {
    match tags {
        Some(t) if !t.is_empty() => i64::from(java_string_hash(t)),
        _ => 0,
    }
}

/// The index-file hash of a key: `abs(hash("topic#key"))`, with `i32::MIN` mapped to 0
/// as RocketMQ's `IndexFile.indexKeyHashMethod` does.
pub fn index_key_hash(topic: &str, key: &str) -> i32 {
    let h = topic
        .encode_utf16()
        .chain("#".encode_utf16())
        .chain(key.encode_utf16())
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    if h == i32::MIN {
        0
    } else {
        h.abs()
    }
}

/// CRC-32 (IEEE) of a message body, masked to be non-negative as RocketMQ stores it.
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str, expected: i32) {
        assert_eq!(java_string_hash(s), expected, "hash of {s:?}");
    }

    #[test]
    fn matches_java_string_hash() {
        check("", 0);
        check("*", 42);
        check("TagA", 2_598_919);
        check("TagB", 2_598_920);
        // "hello world".hashCode() in Java
        check("hello world", 1_794_106_052);
        // Overflowing value; Java: "TopicTest#KEY_0123456789".hashCode()
        check("polygenelubricants", i32::MIN);
        // Non-BMP: U+1F600 is two UTF-16 units (0xD83D, 0xDE00): 0xD83D * 31 + 0xDE00
        check("\u{1F600}", 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn index_hash_is_hash_of_joined_key_and_never_negative() {
        assert_eq!(index_key_hash("T", "k"), java_string_hash("T#k").abs());
        // "polygenelubricants" hashes to i32::MIN; split it around a '#'-free join is
        // impossible, so check the mapping through the same code path directly.
        let h = java_string_hash("polygenelubricants");
        assert_eq!(h, i32::MIN);
        assert!(index_key_hash("a", "b") >= 0);
    }

    #[test]
    fn tags_code_of_missing_tag_is_zero() {
        assert_eq!(tags_code(None), 0);
        assert_eq!(tags_code(Some("")), 0);
        assert_eq!(tags_code(Some("TagA")), 2_598_919);
    }

    #[test]
    fn body_crc_is_masked() {
        // crc32("123456789") = 0xCBF43926; masked drops the top bit.
        assert_eq!(body_crc(b"123456789"), 0xCBF4_3926 & 0x7FFF_FFFF);
    }
}
