//! A parser for Java's `.properties` syntax, as `java.util.Properties.load`
//! reads it, which is how RocketMQ reads `broker.conf`.
//!
//! Supported, following the `Properties.load(Reader)` documentation:
//! * `key=value`, `key: value` and `key value`, with whitespace around the
//!   separator ignored;
//! * comment lines starting with `#` or `!` (after optional whitespace);
//! * a line ending in an odd number of backslashes continues on the next
//!   line, whose leading whitespace is dropped;
//! * escapes `\t`, `\n`, `\r`, `\f`, `\uXXXX`, and `\` before any other
//!   character standing for that character (`\=`, `\:`, `\ `, `\\`).
//!
//! One deliberate difference: values are trimmed at both ends, as RocketMQ
//! trims every string it reads, rather than keeping trailing whitespace.
//! Duplicate keys are all returned in order; the caller lets the last win,
//! as `Properties` does.

/// One `key=value` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Property {
    pub key: String,
    pub value: String,
    /// 1-based line where the entry starts, for error messages.
    pub line: usize,
}

/// A syntax error and the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub reason: &'static str,
}

/// Java's whitespace between key and value: space, tab and form feed.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

/// Parses the whole text. Line terminators are `\n`, `\r\n` and `\r`.
pub(crate) fn parse(text: &str) -> Result<Vec<Property>, SyntaxError> {
    let mut lines = natural_lines(text).enumerate().peekable();
    let mut properties = Vec::new();
    while let Some((index, line)) = lines.next() {
        let line = line.trim_start_matches(is_blank);
        if line.is_empty() || line.starts_with(['#', '!']) {
            continue;
        }
        let mut logical = String::from(line);
        // Continuation lines are never comments, even if they start with '#'.
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start_matches(is_blank)),
                None => break,
            }
        }
        let line_no = index + 1;
        let (raw_key, raw_value) = split_key_value(&logical);
        let err = |reason| SyntaxError { line: line_no, reason };
        properties.push(Property {
            key: unescape(raw_key).map_err(err)?,
            value: unescape(raw_value).map_err(err)?.trim().to_owned(),
            line: line_no,
        });
    }
    Ok(properties)
}

fn natural_lines(text: &str) -> impl Iterator<Item = &str> {
    // Splitting on '\n' then stripping a trailing '\r' handles "\r\n"; lone
    // '\r' (old Mac files) is split in a second pass.
    text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line)).flat_map(|line| line.split('\r'))
}

fn ends_with_odd_backslashes(line: &str) -> bool {
    line.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits a logical line (still escaped) at the first unescaped `=`, `:` or
/// whitespace; whitespace may be followed by one `=` or `:`.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => return (&line[..at], line[at + 1..].trim_start_matches(is_blank)),
            c if is_blank(c) => {
                let rest = line[at..].trim_start_matches(is_blank);
                let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
                return (&line[..at], rest.trim_start_matches(is_blank));
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(raw: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or("malformed \\uXXXX escape")?;
                // Java strings are UTF-16, so characters outside the BMP
                // arrive as a surrogate pair of two escapes.
                let decoded = match code {
                    0xD800..=0xDBFF => {
                        let low = chars.as_str();
                        let low = low
                            .strip_prefix("\\u")
                            .and_then(|rest| rest.get(..4))
                            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                            .filter(|low| (0xDC00..=0xDFFF).contains(low))
                            .ok_or("unpaired surrogate in \\uXXXX escape")?;
                        chars.nth(5);
                        char::from_u32(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
                    }
                    _ => char::from_u32(code),
                };
                out.push(decoded.ok_or("unpaired surrogate in \\uXXXX escape")?);
            }
            Some(other) => out.push(other),
            // A lone trailing backslash (the file ended mid-continuation)
            // is dropped, as Java does.
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &[(&str, &str)]) {
        let parsed: Vec<(String, String)> = parse(text).unwrap().into_iter().map(|p| (p.key, p.value)).collect();
        let expected: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(parsed, expected, "input: {text:?}");
    }

    #[test]
    fn separators() {
        check(
            "a=1\nb: 2\nc 3\nd\t=\t4\ne   :5\nf",
            &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", "")],
        );
        check("a==b", &[("a", "=b")]);
        check("url = http://x:80/y", &[("url", "http://x:80/y")]);
    }

    #[test]
    fn comments_and_blank_lines() {
        check("# c\n  ! c\n\n   \nk=v # not a comment", &[("k", "v # not a comment")]);
    }

    #[test]
    fn continuations() {
        check("namesrvAddr=a:9876;\\\n    b:9876", &[("namesrvAddr", "a:9876;b:9876")]);
        // A continuation line starting with '#' is not a comment.
        check("k=a\\\n#b", &[("k", "a#b")]);
        // An even number of backslashes is an escaped backslash, not a continuation.
        check("k=a\\\\\nj=b", &[("k", "a\\"), ("j", "b")]);
        check("k=a\\\r\n  b\rj=c", &[("k", "ab"), ("j", "c")]);
        check("k=dangling\\", &[("k", "dangling")]);
    }

    #[test]
    fn escapes() {
        check(r"a\=b\:c\ d=x\ty\u00e9\\z", &[("a=b:c d", "x\ty\u{e9}\\z")]);
        check(r"emoji=\ud83d\ude00", &[("emoji", "\u{1F600}")]);
        check(r"k=\q", &[("k", "q")]);
    }

    #[test]
    fn values_are_trimmed_like_rocketmq_does() {
        check("k =  v  \t", &[("k", "v")]);
    }

    #[test]
    fn duplicates_are_kept_in_order() {
        check("k=1\nk=2", &[("k", "1"), ("k", "2")]);
    }

    #[test]
    fn malformed_unicode_escape_reports_its_line() {
        let err = parse("a=1\n\nb=\\u12x4").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(parse(r"k=\ud83d").is_err());
        assert!(parse(r"k=\u12").is_err());
    }
}
