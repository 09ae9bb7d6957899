//! Recursive-descent parser for RocketMQ's `SelectorParser.jj`, including the checks
//! its `create*` factory methods make while building the tree (those are parse errors
//! in Java too: `SelectorParser.parse` wraps every `Throwable` in `MQFilterException`).
//!
//! Grammar, loosest binding first (each level is a left-associative loop):
//! ```text
//! selector   := or EOF
//! or         := and ( OR and )*
//! and        := equality ( AND equality )*
//! equality   := comparison ( '=' comparison | '<>' comparison | IS NULL | IS NOT NULL )*
//! comparison := unary ( ('>'|'>='|'<'|'<=') unary
//!                     | [NOT] (CONTAINS|STARTSWITH|ENDSWITH) string
//!                     | [NOT] BETWEEN unary AND unary
//!                     | [NOT] IN '(' string (',' string)* ')' )*
//! unary      := '+' unary | '-' unary | NOT unary | primary
//! primary    := literal | identifier | '(' or ')'
//! ```
//! Note that `NOT` is a *unary* operator binding tighter than every comparison, as in
//! ActiveMQ, from which RocketMQ took the grammar: `NOT a = 1` means `(NOT a) = 1`.

use super::error::{SqlError, MAX_DEPTH, MAX_EXPRESSION_LEN};
use super::eval::{compare, Lit, Node, OrderOp, TextOp};
use super::lexer::{Lexer, Tok, Token};

/// What the Java factory methods can tell about an operand when they validate it
/// (`instanceof ConstantExpression`, `BooleanExpression`, `PropertyExpression`).
/// It describes the source form, not the folded node: `-5` is a `UnaryExpression`
/// in Java, not a constant, even though we fold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Property,
    LitNull,
    LitBool,
    LitNumber,
    LitString,
    /// Comparisons, logic, NOT, IN, CONTAINS…: Java's `BooleanExpression`s.
    Boolean,
    /// Negation: neither constant nor boolean.
    Other,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Property => "property",
            Kind::LitNull => "NULL",
            Kind::LitBool => "boolean literal",
            Kind::LitNumber => "number literal",
            Kind::LitString => "string literal",
            Kind::Boolean => "boolean expression",
            Kind::Other => "expression",
        }
    }
}

struct Parsed {
    node: Node,
    kind: Kind,
    /// Byte offset where the operand starts, for error messages.
    pos: usize,
    /// Height of `node`; bounded by [`MAX_DEPTH`] so that evaluation and drop recurse
    /// a bounded number of times.
    depth: usize,
}

pub(super) fn parse(src: &str) -> Result<Node, SqlError> {
    if src.len() > MAX_EXPRESSION_LEN {
        return Err(SqlError::TooLong { len: src.len(), max: MAX_EXPRESSION_LEN });
    }
    let mut p = Parser::new(src)?;
    let e = p.or_expr()?;
    if p.cur.tok != Tok::Eof {
        // JavaCC's `JmsSelector` does not demand EOF and silently ignores what follows
        // a complete expression; we reject it (see the `sql92` module doc).
        return Err(p.unexpected("an operator or the end of the expression"));
    }
    Ok(p.as_boolean(e)?.node)
}

/// Parses one operand of a binary-operator level.
type Operand<'s> = fn(&mut Parser<'s>) -> Result<Parsed, SqlError>;

struct Parser<'s> {
    src: &'s str,
    lexer: Lexer<'s>,
    cur: Token<'s>,
    peeked: Option<Token<'s>>,
    /// Open parentheses and prefix operators around the current position.
    nesting: usize,
}

impl<'s> Parser<'s> {
    fn new(src: &'s str) -> Result<Self, SqlError> {
        let mut lexer = Lexer::new(src);
        let cur = lexer.next_token()?;
        Ok(Self { src, lexer, cur, peeked: None, nesting: 0 })
    }

    fn advance(&mut self) -> Result<(), SqlError> {
        self.cur = match self.peeked.take() {
            Some(t) => t,
            None => self.lexer.next_token()?,
        };
        Ok(())
    }

    fn peek(&mut self) -> Result<Tok<'s>, SqlError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        Ok(self.peeked.map_or(Tok::Eof, |t| t.tok))
    }

    fn unexpected(&self, expected: &'static str) -> SqlError {
        let found = if self.cur.tok == Tok::Eof {
            "end of input".to_owned()
        } else {
            let text = &self.src[self.cur.start..self.cur.end];
            match text.char_indices().nth(40) {
                Some((cut, _)) => format!("`{}…`", &text[..cut]),
                None => format!("`{text}`"),
            }
        };
        SqlError::UnexpectedToken { position: self.cur.start, expected, found }
    }

    fn expect(&mut self, tok: Tok<'static>, expected: &'static str) -> Result<(), SqlError> {
        if self.cur.tok != tok {
            return Err(self.unexpected(expected));
        }
        self.advance()
    }

    fn enter(&mut self) -> Result<(), SqlError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(SqlError::TooDeep { position: self.cur.start, max: MAX_DEPTH });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    fn build(node: Node, kind: Kind, pos: usize, depth: usize) -> Result<Parsed, SqlError> {
        if depth > MAX_DEPTH {
            return Err(SqlError::TooDeep { position: pos, max: MAX_DEPTH });
        }
        Ok(Parsed { node, kind, pos, depth })
    }

    /// `asBooleanExpression`: boolean expressions and TRUE/FALSE/NULL pass, a bare
    /// property is cast, anything else is an error.
    fn as_boolean(&self, p: Parsed) -> Result<Parsed, SqlError> {
        match p.kind {
            Kind::Boolean | Kind::LitBool | Kind::LitNull => Ok(p),
            Kind::Property => match p.node {
                Node::Prop(name) => Ok(Parsed { node: Node::PropTruth(name), kind: Kind::Boolean, ..p }),
                // A property kind always holds a `Prop` node; answer an error rather than panic.
                _ => Err(SqlError::NotBoolean { position: p.pos }),
            },
            Kind::LitNumber | Kind::LitString | Kind::Other => Err(SqlError::NotBoolean { position: p.pos }),
        }
    }

    fn logic(&mut self, is_or: bool) -> Result<Parsed, SqlError> {
        let (op, sub): (Tok<'static>, Operand<'s>) =
            if is_or { (Tok::Or, |p| p.logic(false)) } else { (Tok::And, Self::equality) };
        let first = sub(self)?;
        if self.cur.tok != op {
            return Ok(first);
        }
        let pos = first.pos;
        let mut depth = 0;
        let mut items = Vec::new();
        let mut push = |p: Parsed, items: &mut Vec<Node>| {
            depth = depth.max(p.depth);
            match p.node {
                // (a AND b) AND c == a AND b AND c under Java's evaluation rules.
                Node::And(inner) if !is_or => items.extend(inner.into_vec()),
                Node::Or(inner) if is_or => items.extend(inner.into_vec()),
                node => items.push(node),
            }
        };
        push(self.as_boolean(first)?, &mut items);
        while self.cur.tok == op {
            self.advance()?;
            let next = sub(self)?;
            push(self.as_boolean(next)?, &mut items);
        }
        let node = if is_or { Node::Or(items.into()) } else { Node::And(items.into()) };
        Self::build(node, Kind::Boolean, pos, depth + 1)
    }

    fn or_expr(&mut self) -> Result<Parsed, SqlError> {
        self.logic(true)
    }

    fn equality(&mut self) -> Result<Parsed, SqlError> {
        let mut left = self.comparison()?;
        loop {
            match self.cur.tok {
                Tok::Eq | Tok::Ne => {
                    let negate = self.cur.tok == Tok::Ne;
                    self.advance()?;
                    let right = self.comparison()?;
                    let eq = Self::equal(left, right)?;
                    left = if negate { Self::not(eq)? } else { eq };
                }
                Tok::Is => {
                    let negate = match self.peek()? {
                        Tok::Null => false,
                        Tok::Not => true,
                        _ => {
                            self.advance()?;
                            return Err(self.unexpected("NULL or NOT NULL after IS"));
                        }
                    };
                    self.advance()?;
                    self.advance()?;
                    if negate {
                        self.expect(Tok::Null, "NULL after IS NOT")?;
                    }
                    let (pos, depth) = (left.pos, left.depth + 1);
                    let is_null = Self::build(Node::IsNull(Box::new(left.node)), Kind::Boolean, pos, depth)?;
                    left = if negate { Self::not(is_null)? } else { is_null };
                }
                _ => return Ok(left),
            }
        }
    }

    fn not(p: Parsed) -> Result<Parsed, SqlError> {
        Self::build(Node::Not(Box::new(p.node)), Kind::Boolean, p.pos, p.depth + 1)
    }

    /// `ComparisonExpression.createEqual` with `checkEqualOperand` and
    /// `checkEqualOperandCompatability`.
    fn equal(l: Parsed, r: Parsed) -> Result<Parsed, SqlError> {
        for p in [&l, &r] {
            if p.kind == Kind::LitNull {
                return Err(SqlError::NullComparison { position: p.pos });
            }
        }
        if l.kind == Kind::LitBool && matches!(r.kind, Kind::LitNumber | Kind::LitString) {
            return Err(SqlError::IncompatibleLiterals { position: l.pos });
        }
        let (pos, depth) = (l.pos, l.depth.max(r.depth) + 1);
        Self::build(Node::Eq(Box::new(l.node), Box::new(r.node)), Kind::Boolean, pos, depth)
    }

    /// `checkLessThanOperand`: only number literals, properties and negations may be
    /// ordered.
    fn orderable(p: &Parsed, op: &'static str) -> Result<(), SqlError> {
        match p.kind {
            Kind::LitNumber | Kind::Property | Kind::Other => Ok(()),
            kind => Err(SqlError::NotOrderable { position: p.pos, op, operand: kind.describe() }),
        }
    }

    fn comparison(&mut self) -> Result<Parsed, SqlError> {
        let mut left = self.unary()?;
        loop {
            let (negated, op) = match self.cur.tok {
                Tok::Not => match self.peek()? {
                    t @ (Tok::Contains | Tok::StartsWith | Tok::EndsWith | Tok::Between | Tok::In) => (true, t),
                    // Leave `NOT` for the caller: it is then an error (`a NOT = 1`).
                    _ => return Ok(left),
                },
                t => (false, t),
            };
            match op {
                Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le => {
                    let (order, name) = match op {
                        Tok::Gt => (OrderOp::Gt, ">"),
                        Tok::Ge => (OrderOp::Ge, ">="),
                        Tok::Lt => (OrderOp::Lt, "<"),
                        _ => (OrderOp::Le, "<="),
                    };
                    self.advance()?;
                    let right = self.unary()?;
                    Self::orderable(&left, name)?;
                    Self::orderable(&right, name)?;
                    let (pos, depth) = (left.pos, left.depth.max(right.depth) + 1);
                    let node = Node::Order(order, Box::new(left.node), Box::new(right.node));
                    left = Self::build(node, Kind::Boolean, pos, depth)?;
                }
                Tok::Contains | Tok::StartsWith | Tok::EndsWith => {
                    if negated {
                        self.advance()?;
                    }
                    self.advance()?;
                    let text_op = match op {
                        Tok::Contains => TextOp::Contains,
                        Tok::StartsWith => TextOp::StartsWith,
                        _ => TextOp::EndsWith,
                    };
                    let needle = self.string_literal()?;
                    let (pos, depth) = (left.pos, left.depth + 1);
                    let node = if needle.is_empty() {
                        // Java answers FALSE before it even evaluates the operand.
                        Node::Const(Some(Lit::Bool(false)))
                    } else {
                        Node::Text { op: text_op, negated, operand: Box::new(left.node), needle }
                    };
                    left = Self::build(node, Kind::Boolean, pos, depth)?;
                }
                Tok::Between => {
                    if negated {
                        self.advance()?;
                    }
                    self.advance()?;
                    let low = self.unary()?;
                    self.expect(Tok::And, "AND in BETWEEN")?;
                    let high = self.unary()?;
                    left = Self::between(left, low, high, negated)?;
                }
                Tok::In => {
                    if negated {
                        self.advance()?;
                    }
                    self.advance()?;
                    let list = self.in_list()?;
                    let Node::Prop(prop) = left.node else {
                        return Err(SqlError::InNeedsProperty { position: left.pos });
                    };
                    let (pos, depth) = (left.pos, left.depth + 1);
                    left = Self::build(Node::In { prop, list, negated }, Kind::Boolean, pos, depth)?;
                }
                _ => return Ok(left),
            }
        }
    }

    /// `createBetween` / `createNotBetween`.
    fn between(value: Parsed, low: Parsed, high: Parsed, negated: bool) -> Result<Parsed, SqlError> {
        let op = if negated { "NOT BETWEEN" } else { "BETWEEN" };
        for p in [&value, &low, &high] {
            Self::orderable(p, op)?;
        }
        // Only BETWEEN (not NOT BETWEEN) checks its literal bounds in Java.
        if !negated && low.kind == Kind::LitNumber && high.kind == Kind::LitNumber {
            if let (Node::Const(Some(lo)), Node::Const(Some(hi))) = (&low.node, &high.node) {
                if compare(hi.scalar(), lo.scalar()).is_ok_and(|o| o.is_lt()) {
                    return Err(SqlError::BetweenBoundsReversed { position: low.pos });
                }
            }
        }
        let pos = value.pos;
        let depth = value.depth.max(low.depth).max(high.depth) + 1;
        let node =
            Node::Between { value: Box::new(value.node), low: Box::new(low.node), high: Box::new(high.node), negated };
        Self::build(node, Kind::Boolean, pos, depth)
    }

    fn in_list(&mut self) -> Result<Box<[Box<str>]>, SqlError> {
        self.expect(Tok::LParen, "`(` after IN")?;
        let mut list = vec![self.string_literal()?];
        while self.cur.tok == Tok::Comma {
            self.advance()?;
            list.push(self.string_literal()?);
        }
        self.expect(Tok::RParen, "`,` or `)` in the IN list")?;
        list.sort_unstable();
        list.dedup();
        Ok(list.into())
    }

    fn string_literal(&mut self) -> Result<Box<str>, SqlError> {
        let Tok::Str(raw) = self.cur.tok else {
            return Err(self.unexpected("a string literal"));
        };
        self.advance()?;
        Ok(unescape(raw))
    }

    fn unary(&mut self) -> Result<Parsed, SqlError> {
        let start = self.cur.start;
        match self.cur.tok {
            Tok::Plus => {
                self.enter()?;
                self.advance()?;
                let inner = self.unary()?;
                self.leave();
                Ok(inner)
            }
            Tok::Minus => {
                self.enter()?;
                self.advance()?;
                let inner = self.unary()?;
                self.leave();
                let (node, depth) = match inner.node {
                    Node::Const(lit) => (Node::Const(Lit::negate(lit)), inner.depth),
                    node => (Node::Neg(Box::new(node)), inner.depth + 1),
                };
                Self::build(node, Kind::Other, start, depth)
            }
            Tok::Not => {
                self.enter()?;
                self.advance()?;
                let inner = self.unary()?;
                self.leave();
                let inner = self.as_boolean(inner)?;
                let depth = inner.depth + 1;
                Self::build(Node::Not(Box::new(inner.node)), Kind::Boolean, start, depth)
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Parsed, SqlError> {
        let start = self.cur.start;
        let (node, kind) = match self.cur.tok {
            Tok::Str(raw) => (Node::Const(Some(Lit::Str(unescape(raw)))), Kind::LitString),
            Tok::Decimal(digits) => (Node::Const(Some(decimal(digits, start)?)), Kind::LitNumber),
            Tok::Float(text) => (Node::Const(Some(float(text, start)?)), Kind::LitNumber),
            Tok::True => (Node::Const(Some(Lit::Bool(true))), Kind::LitBool),
            Tok::False => (Node::Const(Some(Lit::Bool(false))), Kind::LitBool),
            Tok::Null => (Node::Const(None), Kind::LitNull),
            Tok::Id(name) => (Node::Prop(name.into()), Kind::Property),
            Tok::LParen => {
                self.enter()?;
                self.advance()?;
                let inner = self.or_expr()?;
                self.expect(Tok::RParen, "`)`")?;
                self.leave();
                return Ok(inner);
            }
            _ => return Err(self.unexpected("an expression")),
        };
        self.advance()?;
        Self::build(node, kind, start, 1)
    }
}

/// `stringLitteral()`: `''` stands for one quote.
fn unescape(raw: &str) -> Box<str> {
    if raw.contains('\'') {
        raw.replace("''", "'").into()
    } else {
        raw.into()
    }
}

/// `ConstantExpression.createFromDecimal`: a `long`, narrowed to `int` when it fits.
fn decimal(digits: &str, position: usize) -> Result<Lit, SqlError> {
    let v: i64 = digits.parse().map_err(|_| SqlError::IntegerOutOfRange { position })?;
    Ok(i32::try_from(v).map_or(Lit::Long(v), Lit::Int))
}

/// `ConstantExpression.createFloat`: Java rejects values above `Double.MAX_VALUE` and
/// below `Double.MIN_VALUE` (the smallest *positive* double), so every literal that is
/// or rounds to zero — `0.0`, `0e5`, `1e-400` — is an error in RocketMQ, and here.
fn float(text: &str, position: usize) -> Result<Lit, SqlError> {
    let v: f64 = text.parse().map_err(|_| SqlError::FloatOutOfRange { position })?;
    if v.is_infinite() || v == 0.0 {
        return Err(SqlError::FloatOutOfRange { position });
    }
    Ok(Lit::Double(v))
}
