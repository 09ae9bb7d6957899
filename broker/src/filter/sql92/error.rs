//! What can go wrong with an SQL92 expression: compiling it ([`SqlError`], within
//! [`MAX_EXPRESSION_LEN`] and [`MAX_DEPTH`]) and evaluating it ([`EvalError`]).

/// Longest expression, in bytes, that [`SqlFilter::compile`] accepts.
pub const MAX_EXPRESSION_LEN: usize = 8 * 1024;

/// Deepest nesting (parentheses and prefix operators, and height of the compiled tree)
/// that [`SqlFilter::compile`] accepts.
pub const MAX_DEPTH: usize = 64;

/// Why an expression does not compile. Every variant except [`SqlError::TooLong`]
/// carries the byte offset in the expression where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    #[error("expression is {len} bytes long, the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("expression nests deeper than {max} levels at position {position}")]
    TooDeep { position: usize, max: usize },
    #[error("unexpected character {found:?} at position {position}")]
    UnexpectedChar { position: usize, found: char },
    #[error("`!=` at position {position} is not SQL92 as RocketMQ speaks it, use `<>`")]
    BangEquals { position: usize },
    #[error("string literal starting at position {position} is not terminated")]
    UnterminatedString { position: usize },
    #[error("comment starting at position {position} is not terminated")]
    UnterminatedComment { position: usize },
    #[error("expected {expected} at position {position}, found {found}")]
    UnexpectedToken { position: usize, expected: &'static str, found: String },
    #[error("integer literal at position {position} does not fit in a 64-bit long")]
    IntegerOutOfRange { position: usize },
    #[error(
        "decimal literal at position {position} is out of RocketMQ's range \
         (4.9E-324 to 1.7976931348623157E308; zero is not allowed)"
    )]
    FloatOutOfRange { position: usize },
    #[error("expression at position {position} does not produce a boolean")]
    NotBoolean { position: usize },
    #[error("NULL at position {position} cannot be compared with `=` or `<>`, use IS NULL")]
    NullComparison { position: usize },
    #[error("boolean literal at position {position} cannot be compared with a number or string literal")]
    IncompatibleLiterals { position: usize },
    #[error("{operand} at position {position} cannot be an operand of {op}, only numbers and properties can")]
    NotOrderable { position: usize, op: &'static str, operand: &'static str },
    #[error("BETWEEN at position {position} has its lower bound above its upper bound")]
    BetweenBoundsReversed { position: usize },
    #[error("IN at position {position} needs a property on its left")]
    InNeedsProperty { position: usize },
}

impl SqlError {
    /// Byte offset of the problem in the expression, when there is one.
    pub fn position(&self) -> Option<usize> {
        use SqlError::*;
        match *self {
            TooLong { .. } => None,
            TooDeep { position, .. }
            | UnexpectedChar { position, .. }
            | BangEquals { position }
            | UnterminatedString { position }
            | UnterminatedComment { position }
            | UnexpectedToken { position, .. }
            | IntegerOutOfRange { position }
            | FloatOutOfRange { position }
            | NotBoolean { position }
            | NullComparison { position }
            | IncompatibleLiterals { position }
            | NotOrderable { position, .. }
            | BetweenBoundsReversed { position }
            | InNeedsProperty { position } => Some(position),
        }
    }
}

/// Why evaluating a compiled filter against one message failed: the conditions under
/// which the Java evaluator throws. The message then does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A string had to be read as a number (`Integer.valueOf`, `Long.valueOf`,
    /// `Double.valueOf`) and was not one.
    #[error("a string operand is not a valid {expected}")]
    NotANumber { expected: &'static str },
    /// A boolean on the left of `=` met a string on the right (Java's
    /// `ClassCastException` in `ComparisonExpression.__compare`).
    #[error("a boolean cannot be compared with a string on its right")]
    BooleanVsString,
    /// A logical operator got a non-boolean operand. The compiler never builds such
    /// a tree; this exists so that evaluation cannot panic.
    #[error("a logical operator got a non-boolean operand")]
    NotBoolean,
}
