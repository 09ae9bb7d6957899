// PERF-CRITICAL PATH: evaluated once per message a SQL92 subscriber pulls.
//! The compiled expression tree and its evaluation.
//!
//! Evaluation reproduces the Java objects' `evaluate` methods value for value:
//! every node yields a [`Scalar`] or null (`None`), and a Java exception becomes an
//! [`EvalError`], which aborts the whole evaluation exactly as the exception did
//! (`ExpressionMessageFilter` catches it and answers "no match"). Short-circuiting
//! therefore matters: `a = 1 AND b > 5` with `a = '2'` and `b = 'x'` is FALSE, not an
//! error, because Java never evaluates the right side.
//!
//! Nothing here allocates: property values are borrowed from the lookup, literals
//! from the tree, and numbers are parsed from the borrowed text when a comparison needs
//! them.

use std::cmp::Ordering;

use super::error::EvalError;
use crate::filter::lookup::PropertyLookup;

/// A literal stored in the tree. Java distinguishes `Integer` from `Long` literals
/// (`ConstantExpression.createFromDecimal` narrows to `Integer` when the value fits),
/// and that choice decides whether a property is parsed with `Integer.valueOf` or
/// `Long.valueOf` — so we keep both.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Lit {
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(Box<str>),
}

impl Lit {
    pub fn scalar(&self) -> Scalar<'_> {
        match self {
            Lit::Bool(b) => Scalar::Bool(*b),
            Lit::Int(i) => Scalar::Int(*i),
            Lit::Long(l) => Scalar::Long(*l),
            Lit::Double(d) => Scalar::Double(*d),
            Lit::Str(s) => Scalar::Str(s),
        }
    }

    /// `UnaryExpression.negate`: numbers negate in their own type (wrapping, as Java's
    /// `-intValue()` does); anything else negates to null.
    pub fn negate(lit: Option<Lit>) -> Option<Lit> {
        match lit? {
            Lit::Int(i) => Some(Lit::Int(i.wrapping_neg())),
            Lit::Long(l) => Some(Lit::Long(l.wrapping_neg())),
            Lit::Double(d) => Some(Lit::Double(-d)),
            Lit::Bool(_) | Lit::Str(_) => None,
        }
    }
}

/// A non-null runtime value (Java's `Boolean`, `Integer`, `Long`, `Double`, `String`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Scalar<'a> {
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OrderOp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl OrderOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            OrderOp::Gt => ord.is_gt(),
            OrderOp::Ge => ord.is_ge(),
            OrderOp::Lt => ord.is_lt(),
            OrderOp::Le => ord.is_le(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// One node of a compiled expression. Boolean nodes evaluate to `Bool` or null.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    /// A literal, or a constant folded at compile time (`None` is NULL).
    Const(Option<Lit>),
    /// `PropertyExpression`: the raw string value, or null when absent.
    Prop(Box<str>),
    /// `-x` on a non-constant operand.
    Neg(Box<Node>),
    /// `UnaryExpression.createBooleanCast` of a property used as a condition
    /// (`WHERE a`): null when absent, FALSE otherwise, since a property value is
    /// always a string and only a `Boolean` casts to TRUE.
    PropTruth(Box<str>),
    /// `=` (`doCreateEqual`).
    Eq(Box<Node>, Box<Node>),
    /// `IS NULL`: Java's `doCreateEqual(x, NULL)`, specialised.
    IsNull(Box<Node>),
    /// `>`, `>=`, `<`, `<=`.
    Order(OrderOp, Box<Node>, Box<Node>),
    /// `BETWEEN` (Java: `x >= low AND x <= high`) or `NOT BETWEEN`
    /// (`x < low OR x > high`); `value` is evaluated once, which is equivalent because
    /// evaluation has no side effects.
    Between {
        value: Box<Node>,
        low: Box<Node>,
        high: Box<Node>,
        negated: bool,
    },
    /// `IN` / `NOT IN`; `list` is sorted for binary search.
    In {
        prop: Box<str>,
        list: Box<[Box<str>]>,
        negated: bool,
    },
    /// `CONTAINS`, `STARTSWITH`, `ENDSWITH` and their `NOT` forms, with a non-empty
    /// needle (an empty needle is folded to FALSE at compile time, as Java answers
    /// FALSE before evaluating the operand).
    Text {
        op: TextOp,
        negated: bool,
        operand: Box<Node>,
        needle: Box<str>,
    },
    Not(Box<Node>),
    /// n-ary `AND`; equivalent to Java's left-deep chain (see [`eval`]).
    And(Box<[Node]>),
    /// n-ary `OR`.
    Or(Box<[Node]>),
}

type Value<'a> = Option<Scalar<'a>>;

/// Evaluates `node`. `Ok(None)` is SQL NULL.
///
/// # Errors
/// The Java implementation's runtime exceptions, see [`EvalError`].
pub(super) fn eval<'a, P: PropertyLookup + ?Sized>(node: &'a Node, props: &'a P) -> Result<Value<'a>, EvalError> {
    Ok(match node {
        Node::Const(lit) => lit.as_ref().map(Lit::scalar),
        Node::Prop(name) => props.get(name).map(Scalar::Str),
        Node::Neg(inner) => match eval(inner, props)? {
            Some(Scalar::Int(i)) => Some(Scalar::Int(i.wrapping_neg())),
            Some(Scalar::Long(l)) => Some(Scalar::Long(l.wrapping_neg())),
            Some(Scalar::Double(d)) => Some(Scalar::Double(-d)),
            _ => None,
        },
        Node::PropTruth(name) => props.get(name).map(|_| Scalar::Bool(false)),
        Node::Eq(l, r) => {
            // Both sides are evaluated before the null checks, as in Java.
            let lv = eval(l, props)?;
            let rv = eval(r, props)?;
            match (lv, rv) {
                (None, None) => Some(Scalar::Bool(true)),
                (None, Some(_)) => None,
                (Some(_), None) => Some(Scalar::Bool(false)),
                (Some(a), Some(b)) => Some(Scalar::Bool(compare(a, b)?.is_eq())),
            }
        }
        Node::IsNull(x) => Some(Scalar::Bool(eval(x, props)?.is_none())),
        Node::Order(op, l, r) => order(*op, l, r, props)?.map(Scalar::Bool),
        Node::Between { value, low, high, negated } => {
            let v = eval(value, props)?;
            between(v, low, high, *negated, props)?.map(Scalar::Bool)
        }
        Node::In { prop, list, negated } => props.get(prop).map(|v| {
            let found = if list.len() < 8 {
                list.iter().any(|item| **item == *v)
            } else {
                list.binary_search_by(|item| (**item).cmp(v)).is_ok()
            };
            Scalar::Bool(found != *negated)
        }),
        Node::Text { op, negated, operand, needle } => {
            let hit = match eval(operand, props)? {
                Some(Scalar::Str(s)) => Some(match op {
                    TextOp::Contains => s.contains(&**needle),
                    TextOp::StartsWith => s.starts_with(&**needle),
                    TextOp::EndsWith => s.ends_with(&**needle),
                }),
                // Null and non-string operands are FALSE for both the plain and the NOT form.
                _ => None,
            };
            Some(Scalar::Bool(hit.is_some_and(|h| h != *negated)))
        }
        Node::Not(x) => truth(eval(x, props)?)?.map(|b| Scalar::Bool(!b)),
        Node::And(items) => {
            // Java's AND(AND(a, b), c): the first FALSE wins and stops evaluation;
            // otherwise null if any operand was null, else TRUE.
            let mut unknown = false;
            for item in items.iter() {
                match truth(eval(item, props)?)? {
                    Some(false) => return Ok(Some(Scalar::Bool(false))),
                    Some(true) => {}
                    None => unknown = true,
                }
            }
            (!unknown).then_some(Scalar::Bool(true))
        }
        Node::Or(items) => {
            let mut unknown = false;
            for item in items.iter() {
                match truth(eval(item, props)?)? {
                    Some(true) => return Ok(Some(Scalar::Bool(true))),
                    Some(false) => {}
                    None => unknown = true,
                }
            }
            (!unknown).then_some(Scalar::Bool(false))
        }
    })
}

/// Java casts the operand of NOT/AND/OR to `Boolean`. The compiler only builds those
/// nodes over boolean nodes, so the error arm is a guard against our own bugs.
fn truth(v: Value<'_>) -> Result<Option<bool>, EvalError> {
    match v {
        None => Ok(None),
        Some(Scalar::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(EvalError::NotBoolean),
    }
}

/// `ComparisonExpression.evaluate` for `>`, `>=`, `<`, `<=`.
fn order<'a, P: PropertyLookup + ?Sized>(
    op: OrderOp,
    l: &'a Node,
    r: &'a Node,
    props: &'a P,
) -> Result<Option<bool>, EvalError> {
    let Some(lv) = eval(l, props)? else { return Ok(None) };
    let Some(rv) = eval(r, props)? else { return Ok(None) };
    Ok(Some(op.holds(order_values(lv, rv)?)))
}

fn order_values(lv: Scalar<'_>, rv: Scalar<'_>) -> Result<Ordering, EvalError> {
    if let (Scalar::Str(a), Scalar::Str(b)) = (lv, rv) {
        // Two strings are only ordered as doubles; Java throws if either is not one.
        let a = parse_java_double(a).ok_or(EvalError::NotANumber { expected: "double" })?;
        let b = parse_java_double(b).ok_or(EvalError::NotANumber { expected: "double" })?;
        return Ok(java_double_cmp(a, b));
    }
    compare(lv, rv)
}

fn between<'a, P: PropertyLookup + ?Sized>(
    v: Value<'a>,
    low: &'a Node,
    high: &'a Node,
    negated: bool,
    props: &'a P,
) -> Result<Option<bool>, EvalError> {
    // One comparison of the Java pair, with its null rule (left, then right).
    let cmp = |bound: &'a Node, op: OrderOp| -> Result<Option<bool>, EvalError> {
        let Some(lv) = v else { return Ok(None) };
        let Some(rv) = eval(bound, props)? else { return Ok(None) };
        Ok(Some(op.holds(order_values(lv, rv)?)))
    };
    if !negated {
        // AND(x >= low, x <= high)
        let first = cmp(low, OrderOp::Ge)?;
        if first == Some(false) {
            return Ok(Some(false));
        }
        let second = cmp(high, OrderOp::Le)?;
        Ok(match (first, second) {
            (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        })
    } else {
        // OR(x < low, x > high)
        let first = cmp(low, OrderOp::Lt)?;
        if first == Some(true) {
            return Ok(Some(true));
        }
        let second = cmp(high, OrderOp::Gt)?;
        Ok(match (first, second) {
            (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        })
    }
}

/// `ComparisonExpression.__compare(lv, rv, convertStringExpressions = true)`.
///
/// Mismatched types are converted towards the right-hand type's family: numbers widen
/// (`Integer` → `Long` → `Double`), a string next to a number is parsed with that
/// number's Java parser (`Integer.valueOf`, `Long.valueOf`, `Double.valueOf`), a string
/// next to a boolean with `Boolean.valueOf`. Any other pair compares as "less" (Java
/// returns -1), except boolean-then-string, where Java throws `ClassCastException`.
pub(super) fn compare(lv: Scalar<'_>, rv: Scalar<'_>) -> Result<Ordering, EvalError> {
    use Scalar::*;
    const INT: EvalError = EvalError::NotANumber { expected: "int" };
    const LONG: EvalError = EvalError::NotANumber { expected: "long" };
    const DOUBLE: EvalError = EvalError::NotANumber { expected: "double" };
    Ok(match (lv, rv) {
        (Bool(a), Bool(b)) => a.cmp(&b),
        (Int(a), Int(b)) => a.cmp(&b),
        (Long(a), Long(b)) => a.cmp(&b),
        (Double(a), Double(b)) => java_double_cmp(a, b),
        // Only equality of two strings is observable (ordering goes through doubles).
        (Str(a), Str(b)) => a.cmp(b),

        (Bool(_), Str(_)) => return Err(EvalError::BooleanVsString),
        (Bool(_), _) => Ordering::Less,

        (Int(a), Long(b)) => i64::from(a).cmp(&b),
        (Int(a), Double(b)) => java_double_cmp(f64::from(a), b),
        (Int(a), Str(b)) => a.cmp(&b.parse::<i32>().map_err(|_| INT)?),
        (Int(_), Bool(_)) => Ordering::Less,

        (Long(a), Int(b)) => a.cmp(&i64::from(b)),
        (Long(a), Double(b)) => java_double_cmp(a as f64, b),
        (Long(a), Str(b)) => a.cmp(&b.parse::<i64>().map_err(|_| LONG)?),
        (Long(_), Bool(_)) => Ordering::Less,

        (Double(a), Int(b)) => java_double_cmp(a, f64::from(b)),
        (Double(a), Long(b)) => java_double_cmp(a, b as f64),
        (Double(a), Str(b)) => java_double_cmp(a, parse_java_double(b).ok_or(DOUBLE)?),
        (Double(_), Bool(_)) => Ordering::Less,

        (Str(a), Bool(b)) => a.eq_ignore_ascii_case("true").cmp(&b),
        (Str(a), Int(b)) => a.parse::<i32>().map_err(|_| INT)?.cmp(&b),
        (Str(a), Long(b)) => a.parse::<i64>().map_err(|_| LONG)?.cmp(&b),
        (Str(a), Double(b)) => java_double_cmp(parse_java_double(a).ok_or(DOUBLE)?, b),
    })
}

/// `Double.compareTo`: every NaN equals every other NaN and is greater than
/// everything else, `-0.0 < 0.0`.
pub(super) fn java_double_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.total_cmp(&b),
    }
}

/// `Double.valueOf(String)` for decimal input: surrounding characters `<= ' '` are
/// trimmed, then `[+-]? (NaN | Infinity | digits [. digits] [exp] | . digits [exp]) [fFdD]?`.
/// Hexadecimal floats (`0x1p3`) are not supported and read as "not a number".
pub(super) fn parse_java_double(s: &str) -> Option<f64> {
    let s = s.trim_matches(|c: char| c <= ' ');
    let b = s.as_bytes();
    let (neg, unsigned) = match b.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    match unsigned {
        "NaN" => return Some(f64::NAN),
        "Infinity" => return Some(if neg { f64::NEG_INFINITY } else { f64::INFINITY }),
        _ => {}
    }
    let u = unsigned.as_bytes();
    let mut i = 0;
    let mut digits = 0;
    while i < u.len() && u[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < u.len() && u[i] == b'.' {
        i += 1;
        while i < u.len() && u[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < u.len() && (u[i] == b'e' || u[i] == b'E') {
        i += 1;
        if i < u.len() && (u[i] == b'+' || u[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < u.len() && u[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    let number_end = i;
    if i < u.len() && matches!(u[i], b'f' | b'F' | b'd' | b'D') {
        i += 1;
    }
    if i != u.len() {
        return None;
    }
    // The slice is now plain decimal syntax, which Rust parses with the same
    // round-to-nearest rule as Java; the sign is applied separately.
    let v: f64 = unsigned[..number_end].parse().ok()?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_double_parsing() {
        let ok = |s: &str, v: f64| assert_eq!(parse_java_double(s), Some(v), "{s:?}");
        ok("1", 1.0);
        ok(" 1.5 ", 1.5);
        ok("\t-2.5e3\n", -2500.0);
        ok("+.5", 0.5);
        ok("5.", 5.0);
        ok("1e400", f64::INFINITY);
        ok("2.5f", 2.5);
        ok("2.5D", 2.5);
        ok("-Infinity", f64::NEG_INFINITY);
        assert!(parse_java_double("NaN").unwrap().is_nan());
        assert!(parse_java_double("-NaN").unwrap().is_nan());
        for bad in [
            "", " ", ".", "e5", "1e", "1e+", "inf", "nan", "infinity", "1.5x", "1.5ff", "0x10p0", "1_000", "--1", "1 2",
        ] {
            assert_eq!(parse_java_double(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn java_compare_conversions() {
        use Scalar::*;
        assert_eq!(compare(Str("5"), Int(5)), Ok(Ordering::Equal));
        assert_eq!(compare(Str("+5"), Int(5)), Ok(Ordering::Equal));
        assert_eq!(compare(Str("5.0"), Int(5)), Err(EvalError::NotANumber { expected: "int" }));
        assert_eq!(compare(Str("3000000000"), Int(5)), Err(EvalError::NotANumber { expected: "int" }));
        assert_eq!(compare(Str("3000000000"), Long(3_000_000_000)), Ok(Ordering::Equal));
        assert_eq!(compare(Str("5.0"), Double(5.0)), Ok(Ordering::Equal));
        assert_eq!(compare(Int(5), Double(5.0)), Ok(Ordering::Equal));
        assert_eq!(compare(Long(5), Int(6)), Ok(Ordering::Less));
        assert_eq!(compare(Str("TRUE"), Bool(true)), Ok(Ordering::Equal));
        assert_eq!(compare(Str("yes"), Bool(false)), Ok(Ordering::Equal));
        assert_eq!(compare(Bool(true), Str("true")), Err(EvalError::BooleanVsString));
        assert_eq!(compare(Int(1), Bool(true)), Ok(Ordering::Less));
        assert_eq!(compare(Double(f64::NAN), Double(f64::INFINITY)), Ok(Ordering::Greater));
        assert_eq!(compare(Double(-0.0), Double(0.0)), Ok(Ordering::Less));
    }
}
