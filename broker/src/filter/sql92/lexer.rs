//! Tokens of RocketMQ's selector grammar (`SelectorParser.jj`).
//!
//! Mirrors the JavaCC token definitions, longest match first:
//! - whitespace is `' '`, `\t`, `\n`, `\r`, `\f` only;
//! - `-- …` runs to the end of the line and `/* … */` is a block comment. JavaCC requires
//!   the line comment to end with a newline; we also end it at the end of input (see
//!   the module doc of `sql92` for why that only widens what we accept);
//! - keywords (`NOT AND OR BETWEEN IN TRUE FALSE NULL IS CONTAINS STARTSWITH ENDSWITH`)
//!   are case-insensitive and reserved: they can never name a property;
//! - identifiers are `[A-Za-z_$][A-Za-z0-9_$]*` — no `.`, no non-ASCII letters;
//! - `DECIMAL_LITERAL` is `0 | [1-9][0-9]*[lL]?` (the `L` suffix does not apply to `0`),
//!   `FLOATING_POINT_LITERAL` is `d+.d*(e)? | .d+(e)? | d+e` with `e = [eE][+-]?d+`;
//! - strings are single-quoted, `''` escapes a quote, and may span lines.

use super::error::SqlError;

/// One lexical token. Literal tokens keep the source slice; conversion to a value
/// happens in the parser, which knows the token's position for error reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok<'s> {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
    /// Digits of a `DECIMAL_LITERAL` (suffix `L` already stripped).
    Decimal(&'s str),
    /// Text of a `FLOATING_POINT_LITERAL`.
    Float(&'s str),
    /// Raw text between the quotes of a string literal, `''` still doubled.
    Str(&'s str),
    Id(&'s str),
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Eof,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token<'s> {
    pub tok: Tok<'s>,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset one past the last character.
    pub end: usize,
}

pub(super) struct Lexer<'s> {
    src: &'s str,
    pos: usize,
}

const KEYWORDS: [(&str, Tok<'static>); 12] = [
    ("NOT", Tok::Not),
    ("AND", Tok::And),
    ("OR", Tok::Or),
    ("BETWEEN", Tok::Between),
    ("IN", Tok::In),
    ("TRUE", Tok::True),
    ("FALSE", Tok::False),
    ("NULL", Tok::Null),
    ("IS", Tok::Is),
    ("CONTAINS", Tok::Contains),
    ("STARTSWITH", Tok::StartsWith),
    ("ENDSWITH", Tok::EndsWith),
];

fn is_id_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

fn is_id_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

impl<'s> Lexer<'s> {
    pub fn new(src: &'s str) -> Self {
        Self { src, pos: 0 }
    }

    fn bytes(&self) -> &'s [u8] {
        self.src.as_bytes()
    }

    fn peek_at(&self, i: usize) -> Option<u8> {
        self.bytes().get(i).copied()
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), SqlError> {
        let b = self.bytes();
        loop {
            match b.get(self.pos) {
                Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0c) => self.pos += 1,
                Some(b'-') if b.get(self.pos + 1) == Some(&b'-') => {
                    // Runs to the end of the line (or of the input).
                    while let Some(&c) = b.get(self.pos) {
                        if c == b'\n' || c == b'\r' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                Some(b'/') if b.get(self.pos + 1) == Some(&b'*') => {
                    let start = self.pos;
                    match self.src[self.pos + 2..].find("*/") {
                        Some(i) => self.pos += 2 + i + 2,
                        None => return Err(SqlError::UnterminatedComment { position: start }),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    pub fn next_token(&mut self) -> Result<Token<'s>, SqlError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(c) = self.peek_at(start) else {
            return Ok(Token { tok: Tok::Eof, start, end: start });
        };
        let (tok, len) = match c {
            b'=' => (Tok::Eq, 1),
            b'<' => match self.peek_at(start + 1) {
                Some(b'>') => (Tok::Ne, 2),
                Some(b'=') => (Tok::Le, 2),
                _ => (Tok::Lt, 1),
            },
            b'>' => match self.peek_at(start + 1) {
                Some(b'=') => (Tok::Ge, 2),
                _ => (Tok::Gt, 1),
            },
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'!' if self.peek_at(start + 1) == Some(b'=') => {
                return Err(SqlError::BangEquals { position: start });
            }
            b'\'' => return self.string(start),
            b'0'..=b'9' => return Ok(self.number(start)),
            b'.' if self.peek_at(start + 1).is_some_and(|d| d.is_ascii_digit()) => {
                return Ok(self.number(start));
            }
            c if is_id_start(c) => return Ok(self.word(start)),
            _ => {
                let found = self.src[start..].chars().next().unwrap_or('\u{fffd}');
                return Err(SqlError::UnexpectedChar { position: start, found });
            }
        };
        self.pos = start + len;
        Ok(Token { tok, start, end: self.pos })
    }

    fn string(&mut self, start: usize) -> Result<Token<'s>, SqlError> {
        let b = self.bytes();
        let mut i = start + 1;
        loop {
            match b.get(i) {
                None => return Err(SqlError::UnterminatedString { position: start }),
                Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                Some(b'\'') => break,
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        Ok(Token { tok: Tok::Str(&self.src[start + 1..i]), start, end: self.pos })
    }

    fn digits(&self, mut i: usize) -> usize {
        while self.peek_at(i).is_some_and(|d| d.is_ascii_digit()) {
            i += 1;
        }
        i
    }

    /// Length of an exponent (`[eE][+-]?d+`) starting at `i`, or 0 if there is none.
    fn exponent(&self, i: usize) -> usize {
        if !matches!(self.peek_at(i), Some(b'e' | b'E')) {
            return 0;
        }
        let mut j = i + 1;
        if matches!(self.peek_at(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let end = self.digits(j);
        if end == j {
            0
        } else {
            end - i
        }
    }

    fn number(&mut self, start: usize) -> Token<'s> {
        let int_end = self.digits(start);
        // FLOATING_POINT_LITERAL alternatives, longest match.
        let float_end = if self.peek_at(int_end) == Some(b'.') {
            // `d+ . d* exp?` or `. d+ exp?` (the caller checked a digit follows a lone dot).
            let frac_end = self.digits(int_end + 1);
            Some(frac_end + self.exponent(frac_end))
        } else if int_end > start {
            match self.exponent(int_end) {
                0 => None,
                n => Some(int_end + n),
            }
        } else {
            None
        };
        if let Some(end) = float_end {
            self.pos = end;
            return Token { tok: Tok::Float(&self.src[start..end]), start, end };
        }
        // DECIMAL_LITERAL: "0" | [1-9][0-9]* [lL]?
        if self.bytes()[start] == b'0' {
            self.pos = start + 1;
            return Token { tok: Tok::Decimal("0"), start, end: self.pos };
        }
        let mut end = int_end;
        if matches!(self.peek_at(end), Some(b'l' | b'L')) {
            end += 1;
        }
        self.pos = end;
        Token { tok: Tok::Decimal(&self.src[start..int_end]), start, end }
    }

    fn word(&mut self, start: usize) -> Token<'s> {
        let mut end = start + 1;
        while self.peek_at(end).is_some_and(is_id_part) {
            end += 1;
        }
        self.pos = end;
        let text = &self.src[start..end];
        let tok = KEYWORDS.iter().find(|(kw, _)| kw.eq_ignore_ascii_case(text)).map_or(Tok::Id(text), |(_, tok)| *tok);
        Token { tok, start, end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok<'_>> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().unwrap();
            if t.tok == Tok::Eof {
                return out;
            }
            out.push(t.tok);
        }
    }

    #[test]
    fn numbers_follow_javacc_longest_match() {
        assert_eq!(toks("0123"), [Tok::Decimal("0"), Tok::Decimal("123")]);
        assert_eq!(toks("0123.5"), [Tok::Float("0123.5")]);
        assert_eq!(toks("5L 5l"), [Tok::Decimal("5"), Tok::Decimal("5")]);
        assert_eq!(toks("0L"), [Tok::Decimal("0"), Tok::Id("L")]);
        assert_eq!(
            toks("5. .5 5e3 5.e-3 1.5E+10"),
            [Tok::Float("5."), Tok::Float(".5"), Tok::Float("5e3"), Tok::Float("5.e-3"), Tok::Float("1.5E+10")]
        );
        assert_eq!(toks("1e"), [Tok::Decimal("1"), Tok::Id("e")]);
        assert_eq!(toks("5abc"), [Tok::Decimal("5"), Tok::Id("abc")]);
    }

    #[test]
    fn keywords_are_case_insensitive_and_longer_words_are_ids() {
        assert_eq!(
            toks("not NoT notx $a _b1 IS in"),
            [Tok::Not, Tok::Not, Tok::Id("notx"), Tok::Id("$a"), Tok::Id("_b1"), Tok::Is, Tok::In]
        );
    }

    #[test]
    fn operators_comments_and_strings() {
        assert_eq!(
            toks("<><=<>=>=( ),+-"),
            [Tok::Ne, Tok::Le, Tok::Ne, Tok::Eq, Tok::Ge, Tok::LParen, Tok::RParen, Tok::Comma, Tok::Plus, Tok::Minus]
        );
        assert_eq!(toks("a -- c\n/* x * y */ b -- tail"), [Tok::Id("a"), Tok::Id("b")]);
        assert_eq!(toks("'it''s' ''"), [Tok::Str("it''s"), Tok::Str("")]);
    }

    #[test]
    fn lexical_errors_carry_positions() {
        let err = |s| {
            let mut lx = Lexer::new(s);
            loop {
                match lx.next_token() {
                    Ok(t) if t.tok == Tok::Eof => panic!("no error in {s:?}"),
                    Ok(_) => {}
                    Err(e) => return e,
                }
            }
        };
        assert_eq!(err("a = 'x"), SqlError::UnterminatedString { position: 4 });
        assert_eq!(err("a /* x"), SqlError::UnterminatedComment { position: 2 });
        assert_eq!(err("a.b"), SqlError::UnexpectedChar { position: 1, found: '.' });
        assert_eq!(err("a != 1"), SqlError::BangEquals { position: 2 });
        assert_eq!(err("é"), SqlError::UnexpectedChar { position: 0, found: 'é' });
    }
}
