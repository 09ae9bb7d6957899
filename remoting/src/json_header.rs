//! A fast path for the JSON header every Java, Go and C++ client sends.
//!
//! The header is a flat object (`code`, `language`, `version`, `opaque`, `flag`,
//! `remark`, `extFields`, `serializeTypeCurrentRPC`) whose `extFields` maps strings to
//! scalars. Decoding one per message through serde's visitors costs about a
//! microsecond and a half; this scanner reads the common shape directly into an
//! [`ExtFields`] buffer. It is written by hand because it sits on the broker's send
//! path, and it only has to be fast, not complete: on anything it does not expect
//! (escapes, fractions, numbers as strings, unknown keys, nesting) it answers `None`
//! and the caller decodes the header with serde, which accepts every quirk and
//! reports errors. So both paths always agree; the tests compare them.

use crate::command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};

/// The header in `json`, or `None` to let the general decoder handle it.
pub(crate) fn decode(json: &[u8]) -> Option<RemotingCommand> {
    let mut s = Scanner { b: json, i: 0 };
    // Absent fields are zero, as in the general decoder.
    let mut cmd = RemotingCommand {
        code: 0,
        language: LanguageCode::Other,
        version: 0,
        opaque: 0,
        flag: 0,
        remark: None,
        ext_fields: ExtFields::new(),
        serialize_type: SerializeType::Json,
        body: crate::command::Body::Empty,
    };
    let mut language = None;
    // Keys seen, one bit each: serde refuses a repeated field.
    let mut seen = 0u8;
    s.expect(b'{')?;
    if !s.eat(b'}') {
        loop {
            let key = s.string()?;
            s.expect(b':')?;
            let bit = match key {
                "code" => 1,
                "version" => 2,
                "opaque" => 4,
                "flag" => 8,
                "language" => 16,
                "remark" => 32,
                "serializeTypeCurrentRPC" => 64,
                "extFields" => 128,
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match key {
                "code" => cmd.code = s.int()?,
                "version" => cmd.version = s.int()?,
                "opaque" => cmd.opaque = s.int()?,
                "flag" => cmd.flag = s.int()?,
                "language" => language = Some(s.string()?),
                "remark" => {
                    cmd.remark = if s.null() { None } else { Some(s.string()?.to_owned()).filter(|r| !r.is_empty()) }
                }
                "serializeTypeCurrentRPC" => {
                    s.string()?;
                }
                "extFields" => {
                    if !s.null() {
                        cmd.ext_fields = s.ext_fields()?;
                    }
                }
                _ => return None,
            }
            if s.eat(b'}') {
                break;
            }
            s.expect(b',')?;
        }
    }
    s.skip_ws();
    if s.i != s.b.len() {
        return None;
    }
    // Absent: JAVA, as the general decoder's default (an empty name) maps to OTHER.
    cmd.language = LanguageCode::from_name_lossy(language.unwrap_or(""));
    Some(cmd)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn skip_ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        self.skip_ws();
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn null(&mut self) -> bool {
        self.literal(b"null")
    }

    /// A string value appended to `out`, escapes decoded (fastjson writes the
    /// property separators 1 and 2 as `\u0001` and `\u0002`).
    fn string_into(&mut self, out: &mut String) -> Option<()> {
        self.expect(b'"')?;
        loop {
            let start = self.i;
            let len = self.b[start..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            out.push_str(std::str::from_utf8(&self.b[start..start + len]).ok()?);
            self.i = start + len + 1;
            match self.b[start + len] {
                b'"' => return Some(()),
                b'\\' => {
                    let c = match *self.b.get(self.i)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = std::str::from_utf8(self.b.get(self.i + 1..self.i + 5)?).ok()?;
                            let code = u32::from_str_radix(hex, 16).ok()?;
                            self.i += 4;
                            // A surrogate half: leave pairs to serde.
                            char::from_u32(code)?
                        }
                        _ => return None,
                    };
                    self.i += 1;
                    out.push(c);
                }
                _ => return None,
            }
        }
    }

    /// A string without escapes or control characters.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.i;
        let len = self.b[start..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        std::str::from_utf8(&self.b[start..start + len]).ok()
    }

    /// The text of an integer: an optional minus and digits, no leading zeros.
    #[inline]
    fn integer_text(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = self.b[self.i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && self.b[self.i] == b'0') {
            return None;
        }
        self.i += digits;
        // A fraction or an exponent: not an integer; let serde print it.
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        // Only ASCII was consumed.
        std::str::from_utf8(&self.b[start..self.i]).ok()
    }

    fn int(&mut self) -> Option<i32> {
        self.integer_text()?.parse().ok()
    }

    fn ext_fields(&mut self) -> Option<ExtFields> {
        let mut e = ExtFields::with_capacity(16);
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Some(e);
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            self.skip_ws();
            match self.b.get(self.i)? {
                b'"' => e.insert_written(key, |out| self.string_into(out))?,
                b't' if self.literal(b"true") => e.insert(key, "true"),
                b'f' if self.literal(b"false") => e.insert(key, "false"),
                b'n' if self.null() => {}
                b'-' | b'0'..=b'9' => {
                    let v = self.integer_text()?;
                    // serde reads integers as i64/u64 and prints them back (`-0` as
                    // `0`); beyond that range it prints a float.
                    if v == "-0" || (v.parse::<i64>().is_err() && v.parse::<u64>().is_err()) {
                        return None;
                    }
                    e.insert(key, v);
                }
                _ => return None,
            }
            if self.eat(b'}') {
                return Some(e);
            }
            self.expect(b',')?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    fn serde_path(json: &str) -> Option<crate::RemotingCommand> {
        crate::codec::decode_json_header_general(json.as_bytes()).ok()
    }

    #[track_caller]
    fn same(json: &str) {
        let fast = decode(json.as_bytes()).expect("the fast path takes this header");
        let general = serde_path(json).expect("serde takes this header");
        assert_eq!(format!("{fast:?}"), format!("{general:?}"), "{json}");
        assert_eq!(fast.ext_fields, general.ext_fields);
    }

    #[test]
    fn java_send_header_is_read_as_serde_reads_it() {
        same(
            r#"{"code":310,"extFields":{"a":"PG","b":"TopicTest","c":"TBW102","d":"4","e":"1","f":"0","g":"1700000000000","h":"0","i":"TAGS\u0001A\u0002KEYS\u0001k1\u0002","j":"0","k":"false","m":"false"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":409}"#,
        );
        same(r#"{"extFields":{"k":"q\"\\\/\b\f\n\r\t\u00e9\u4e2d"}}"#);
        same(
            r#" { "code" : -1 , "extFields" : { "n" : 12 , "t" : true , "f" : false , "z" : null } , "language" : "CPP" , "remark" : "" } "#,
        );
        same(r#"{"code":0,"remark":"why","extFields":null,"language":"NOPE"}"#);
        same(r#"{}"#);
        same(r#"{"extFields":{}}"#);
        same(r#"{"code":1,"extFields":{"big":18446744073709551615,"neg":-9223372036854775808}}"#);
    }

    #[test]
    fn unusual_headers_go_to_the_general_decoder() {
        for json in [
            r#"{"code":"310"}"#,
            r#"{"code":1.0}"#,
            r#"{"code":1,"extFields":{"k":"\ud83d\ude00"}}"#,
            r#"{"code":1,"extFields":{"k":"\x"}}"#,
            r#"{"code":1,"extFields":{"k\u0041":"v"}}"#,
            r#"{"code":1,"extFields":{"k":1.5}}"#,
            r#"{"code":1,"extFields":{"k":1e3}}"#,
            r#"{"code":1,"extFields":{"k":99999999999999999999999}}"#,
            r#"{"code":1,"extFields":{"k":[1]}}"#,
            r#"{"code":1,"other":2}"#,
            r#"{"code":01}"#,
            r#"{"code":1} x"#,
            r#"{"code":1"#,
            r#"{"code":99999999999}"#,
            r#"{"code":1,"code":2}"#,
            r#"{"code":1,"extFields":{"k":-0}}"#,
            "",
        ] {
            assert!(decode(json.as_bytes()).is_none(), "{json}");
        }
    }
}
