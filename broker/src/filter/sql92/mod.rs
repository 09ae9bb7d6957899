//! RocketMQ's SQL92 message filter: compile a subscription expression once, then
//! evaluate it against each message's properties.
//!
//! This module owns the language — grammar, compile-time checks, and runtime
//! semantics — and nothing else: caching compiled filters per (group, topic,
//! subVersion), deciding whether SQL92 is enabled, and handling retry topics belong to
//! the pull path.
//!
//! # Compatibility
//!
//! The reference is the Java `filter` module (`SelectorParser.jj`,
//! `ComparisonExpression`, `LogicExpression`, `UnaryExpression`,
//! `ConstantExpression`), which is the same in 4.9.x and 5.x except that 5.1.3 added
//! `CONTAINS`, `STARTSWITH`, `ENDSWITH` and their `NOT` forms (we accept them, so those
//! three words are reserved, as in 5.x). The consequences callers and users notice:
//!
//! - **Values.** A property is always its raw string. Literals are `'strings'` (`''`
//!   escapes a quote), integers (an `int` when they fit in 32 bits, else a `long`; an
//!   `L` suffix is allowed), decimals (`double`), `TRUE`, `FALSE`, `NULL`.
//! - **Identifiers** are `[A-Za-z_$][A-Za-z0-9_$]*` and case-sensitive; `.` is not
//!   allowed (Java's lexer fails on it), so dotted property names cannot be filtered
//!   on. Keywords are case-insensitive and reserved.
//! - **No `!=`**: the only inequality is `<>` (we give `!=` its own error message).
//! - **Comparing a property with a number** parses the property with the literal's Java
//!   parser: `a > 5` uses `Integer.valueOf(a)`, so `a = '5.5'` or `a = '3000000000'`
//!   makes the evaluation *fail*; `a > 5.0` uses `Double.valueOf`. Two properties
//!   (`a > b`) are compared as doubles. Equality between two strings is exact.
//!   `a = TRUE` is `Boolean.valueOf(a) == true` (case-insensitive `"true"`).
//! - **A failed conversion aborts the whole evaluation** and the message does not
//!   match (Java throws, `ExpressionMessageFilter` catches and answers false), even
//!   under `NOT` or on one side of an `OR` that is evaluated.
//! - **Three-valued logic.** A missing property is NULL; comparisons with NULL are
//!   NULL; `NOT NULL` is NULL; `AND` is FALSE if an operand is FALSE, else NULL if one
//!   is NULL; `OR` is TRUE if an operand is TRUE, else NULL if one is NULL; both
//!   short-circuit left to right. Only TRUE matches. Quirks kept from Java: `a = b` is
//!   TRUE when both are missing, `'x' = a` is FALSE (not NULL) when `a` is missing,
//!   and `CONTAINS`/`STARTSWITH`/`ENDSWITH` (plain or `NOT`) are FALSE, never NULL, on
//!   a missing property or an empty needle.
//! - **`NOT` binds tighter than comparisons**: `NOT a = 'x'` is `(NOT a) = 'x'`, which
//!   fails at runtime whenever `a` is present. Write `NOT (a = 'x')` or `a <> 'x'`.
//! - **Compile-time checks** that Java makes while building the tree are errors here
//!   too: `= NULL` (use `IS NULL`), `TRUE = 'x'`, ordering a string or boolean literal
//!   (`a > 'x'`), `IN` on anything but a property, `BETWEEN 10 AND 1`, and float
//!   literals that are or round to zero (`0.0` is rejected by RocketMQ because it is
//!   below `Double.MIN_VALUE`) or overflow.
//!
//! Deliberate differences from Java, all in what is *accepted*:
//! - Java ignores anything after a complete expression (`a = 1 b = 2` filters on
//!   `a = 1`); we reject trailing input with its position.
//! - A `--` comment may end at the end of input (JavaCC needs a newline, and only
//!   accepts such input because it ignores trailing tokens).
//! - Inputs longer than [`MAX_EXPRESSION_LEN`] bytes or nested deeper than
//!   [`MAX_DEPTH`] levels are rejected, so that neither compilation nor evaluation
//!   can exhaust the stack.
//! - Numeric conversion of property values accepts ASCII digits only (Java also takes
//!   other Unicode decimal digits) and no hexadecimal floats.
//!
//! # Performance
//!
//! [`SqlFilter::matches`] does not allocate: strings are borrowed from the property
//! lookup and numbers parsed from the borrowed text. `AND`/`OR` chains are flattened,
//! `IN` lists are sorted, negated and empty-needle constants are folded.

mod error;
mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::filter::lookup::PropertyLookup;

pub use error::{EvalError, SqlError, MAX_DEPTH, MAX_EXPRESSION_LEN};

/// A compiled SQL92 subscription expression. Cheap to share (`Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct SqlFilter {
    expression: Box<str>,
    root: eval::Node,
}

impl SqlFilter {
    /// Compiles `expr`.
    ///
    /// # Errors
    /// [`SqlError`] with the position of the first problem; the broker answers
    /// `SUBSCRIPTION_PARSE_FAILED` with its text.
    pub fn compile(expr: &str) -> Result<SqlFilter, SqlError> {
        let root = parser::parse(expr)?;
        Ok(SqlFilter { expression: expr.into(), root })
    }

    /// The source text this filter was compiled from.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Whether a message with these properties matches: the expression evaluates to
    /// TRUE. NULL, FALSE and evaluation errors do not match.
    pub fn matches<P: PropertyLookup + ?Sized>(&self, props: &P) -> bool {
        matches!(eval::eval(&self.root, props), Ok(Some(eval::Scalar::Bool(true))))
    }

    /// The three-valued result, for diagnostics: `Ok(None)` is NULL.
    ///
    /// # Errors
    /// [`EvalError`] where the Java evaluator throws.
    pub fn evaluate<P: PropertyLookup + ?Sized>(&self, props: &P) -> Result<Option<bool>, EvalError> {
        match eval::eval(&self.root, props)? {
            None => Ok(None),
            Some(eval::Scalar::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(EvalError::NotBoolean),
        }
    }
}

impl fmt::Debug for SqlFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SqlFilter").field(&self.expression).finish()
    }
}
