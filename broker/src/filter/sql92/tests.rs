//! SQL92 filter tests: RocketMQ's own cases (`ExpressionTest`, `ParserTest`,
//! `LogicExpressionTest` from the Java `filter` module, adapted to string-valued
//! properties), then our own per operator, and property tests.

use common::properties::Properties;
use proptest::prelude::*;

use super::*;

fn props(kv: &[(&str, &str)]) -> Properties {
    kv.iter().copied().collect()
}

/// Evaluates `expr` on `kv` through both lookups (decoded map and encoded string),
/// checks they agree, and returns the three-valued result.
fn eval_on(expr: &str, kv: &[(&str, &str)]) -> Result<Option<bool>, EvalError> {
    let filter = SqlFilter::compile(expr).unwrap_or_else(|e| panic!("{expr:?} does not compile: {e}"));
    let map = props(kv);
    let encoded = map.encode();
    let a = filter.evaluate(&map);
    let b = filter.evaluate(encoded.as_str());
    assert_eq!(a, b, "{expr:?}: map and encoded lookups disagree on {kv:?}");
    assert_eq!(filter.matches(&map), a == Ok(Some(true)));
    a
}

#[track_caller]
fn check(expr: &str, kv: &[(&str, &str)], expected: Option<bool>) {
    assert_eq!(eval_on(expr, kv), Ok(expected), "{expr:?} on {kv:?}");
}

#[track_caller]
fn check_eval_err(expr: &str, kv: &[(&str, &str)]) {
    let r = eval_on(expr, kv);
    assert!(r.is_err(), "{expr:?} on {kv:?}: expected an evaluation error, got {r:?}");
}

#[track_caller]
fn compile_err(expr: &str) -> SqlError {
    match SqlFilter::compile(expr) {
        Ok(_) => panic!("{expr:?} compiled"),
        Err(e) => e,
    }
}

const T: Option<bool> = Some(true);
const F: Option<bool> = Some(false);
const N: Option<bool> = None;

// ---------------------------------------------------------------------------------
// RocketMQ ParserTest
// ---------------------------------------------------------------------------------

#[test]
fn rocketmq_parser_test_valid() {
    for expr in [
        "a=3 and b<>4 And c>5 AND d<=4",
        "a=3  and    b<>4 And c>5 AND d<=4",
        "a=3 or b<>4 Or c>5 OR d<=4",
        "a in ('3', '4', '5')",
        "(a not in ('6', '4', '5')) or (b in ('3', '4', '5'))",
        "(a between 2 and 10) AND (b not between 6 and 9)",
        "a is null",
        "a is not null",
        "a <= now",
        "a=3 and b contains 'xxx' and c not contains 'xxx'",
    ] {
        SqlFilter::compile(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
    }
}

#[test]
fn rocketmq_parser_test_invalid() {
    assert!(matches!(compile_err("a and between 2 and 10"), SqlError::UnexpectedToken { position: 6, .. }));
    assert_eq!(compile_err("a > 100000000000000000000000"), SqlError::IntegerOutOfRange { position: 4 });
    assert_eq!(compile_err(" a between 10 and 0"), SqlError::BetweenBoundsReversed { position: 11 });
    // testParse_floatOverFlow: a 200 KiB literal; over our length limit before anything else.
    let huge = format!("a > 1{}.{}", "1".repeat(104_448), "1".repeat(104_448));
    assert!(matches!(compile_err(&huge), SqlError::TooLong { .. }));
    assert_eq!(compile_err(&format!("a > 1{}.5", "0".repeat(400))), SqlError::FloatOutOfRange { position: 4 });
}

// ---------------------------------------------------------------------------------
// RocketMQ ExpressionTest
// ---------------------------------------------------------------------------------

#[test]
fn rocketmq_contains_startswith_endswith() {
    let axb = [("value", "axb")];
    check("value contains 'x'", &axb, T);
    check("value startswith 'ax'", &axb, T);
    check("value endswith 'xb'", &axb, T);
    check("value not contains 'x'", &axb, F);
    check("value not startswith 'ax'", &axb, F);
    check("value not endswith 'xb'", &axb, F);
    let abb = [("value", "abb")];
    for op in ["contains", "startswith", "endswith"] {
        check(&format!("value {op} 'x'"), &abb, F);
        check(&format!("value not {op} 'x'"), &abb, T);
        // Empty needle: FALSE for both forms.
        check(&format!("value {op} ''"), &axb, F);
        check(&format!("value not {op} ''"), &axb, F);
        // Missing property: FALSE (not NULL) for both forms.
        check(&format!("value {op} 'x'"), &[], F);
        check(&format!("value not {op} 'x'"), &[], F);
        // Non-string operands (Java's Double/Boolean property values; literals here).
        check(&format!("1.23 {op} 'x'"), &[], F);
        check(&format!("1.23 not {op} 'x'"), &[], F);
        check(&format!("TRUE not {op} 'x'"), &[], F);
        // The needle must be a string literal.
        assert!(matches!(compile_err(&format!("value {op} x")), SqlError::UnexpectedToken { .. }));
        assert!(matches!(compile_err(&format!("value not {op} 123")), SqlError::UnexpectedToken { .. }));
        assert!(matches!(compile_err(&format!("'axb' {op} ")), SqlError::UnexpectedToken { .. }));
        assert!(matches!(compile_err(&format!("'axb' not {op} ")), SqlError::UnexpectedToken { .. }));
        check(&format!("'axb' {op} 'u'"), &[], F);
        check(&format!("'axb' not {op} 'u'"), &[], T);
        check(&format!("' ' {op} ' '"), &[], T);
        check(&format!("' ' not {op} ' '"), &[], F);
        check(&format!("'axb' {op} '.'"), &[], F);
        check(&format!("'axb' not {op} '.'"), &[], T);
        check(&format!("'s' {op} '\\'"), &[], F);
    }
    check("'axb' contains 'x'", &[], T);
    check("'axb' startswith 'ax'", &[], T);
    check("'axb' endswith 'xb'", &[], T);
    check("'axb' not contains 'x'", &[], F);
}

#[test]
fn rocketmq_all_in_one() {
    let kv = [("a", "3"), ("b", "3"), ("c", "axbdc")];
    for op in ["contains", "startswith", "endswith"] {
        check(&format!("a not in ('4', '4', '5') and b between 3 and 10 and c not {op} 'axbc'"), &kv, T);
    }
}

#[test]
fn rocketmq_string_has_string() {
    check("TAGS is not null and TAGS='''''tag'''''", &[("TAGS", "''tag''")], T);
}

#[test]
fn rocketmq_string_compare() {
    let e = "a between up and low";
    check(e, &[("a", "3.14")], N);
    check_eval_err(e, &[("a", "3.14"), ("up", "up"), ("low", "low")]);
    check_eval_err("key is not null and key between 0 and 100", &[("key", "con")]);
    check_eval_err("a between 0 and 100", &[("a", "abc")]);
    check("a=b", &[("a", "3.14"), ("b", "3.14")], T);
    check("a<>b", &[("a", "3.14"), ("b", "3.14")], F);
    check("a<>b", &[("a", "3.14"), ("b", "3.141")], T);
}

#[test]
fn rocketmq_numbers() {
    // String.valueOf(3.1415 * Math.pow(10, 10)) in Java.
    check("a > 3.1E10", &[("a", "3.1415E10")], T);
    check("a > 3.14", &[("a", "3.1415")], T);
    check("a > b", &[("a", "10"), ("b", "20")], F);
    check("a > b", &[("a", "20"), ("b", "10")], T);
}

#[test]
fn rocketmq_logic_and_null() {
    let e = "a is null OR a='hello'";
    check(e, &[], T);
    check(e, &[("a", "hello")], T);
    check(e, &[("a", "abc")], F);

    let e = "a=TRUE OR b=FALSE";
    check(e, &[("a", "true"), ("b", "false")], T);
    check(e, &[("a", "false"), ("b", "true")], F);

    let e = "a is not null and a='hello'";
    check(e, &[("a", "hello")], T);
    check(e, &[], F);

    let and = "a=3 and b<>4 And c>5 AND d<=4";
    check(and, &[("a", "3"), ("b", "5"), ("c", "6"), ("d", "1")], T);
    check(and, &[("a", "4"), ("b", "5"), ("c", "6"), ("d", "1")], F);

    let or = "a=3 or b<>4 Or c>5 OR d<=4";
    check(or, &[("a", "3")], T);
    check(or, &[("a", "4"), ("b", "5")], T);
    check(or, &[("a", "4"), ("b", "4"), ("c", "6")], T);
    check(or, &[("a", "4"), ("b", "4"), ("c", "3"), ("d", "2")], T);
    check(or, &[("a", "4"), ("b", "4"), ("c", "3"), ("d", "10")], F);
}

#[test]
fn rocketmq_in_between_is_null() {
    for v in ["3", "4", "5"] {
        check("a in ('3', '4', '5')", &[("a", v)], T);
        check("a not in ('3', '4', '5')", &[("a", v)], F);
    }
    check("a in ('3', '4', '5')", &[("a", "8")], F);
    check("a not in ('3', '4', '5')", &[("a", "8")], T);
    for v in ["2", "10", "3"] {
        check("a between 2 and 10", &[("a", v)], T);
        check("a not between 2 and 10", &[("a", v)], F);
    }
    for v in ["1", "11"] {
        check("a between 2 and 10", &[("a", v)], F);
        check("a not between 2 and 10", &[("a", v)], T);
    }
    check("a is null", &[("abc", "2")], T);
    check("a is null", &[("a", "2")], F);
    check("a is not null", &[("a", "2")], T);
    check("a is not null", &[("abc", "2")], F);
}

/// `LogicExpressionTest`: the AND/OR truth tables, with NULL as UNKNOWN.
#[test]
fn rocketmq_logic_truth_tables() {
    let lit = |v: Option<bool>| match v {
        Some(true) => "TRUE",
        Some(false) => "FALSE",
        None => "NULL",
    };
    let table = [
        (T, T, T, T),
        (T, F, F, T),
        (T, N, N, T),
        (F, T, F, T),
        (F, F, F, F),
        (F, N, F, N),
        (N, T, N, T),
        (N, F, F, N),
        (N, N, N, N),
    ];
    for (l, r, and, or) in table {
        check(&format!("{} AND {}", lit(l), lit(r)), &[], and);
        check(&format!("{} OR {}", lit(l), lit(r)), &[], or);
    }
}

#[test]
fn short_circuit_skips_failing_operands() {
    // `a > b` fails on non-numbers; Java never evaluates it after a deciding left side.
    let bad = [("a", "x"), ("b", "y")];
    check("FALSE AND a > b", &bad, F);
    check("TRUE OR a > b", &bad, T);
    check_eval_err("TRUE AND a > b", &bad);
    check_eval_err("NULL AND a > b", &bad);
    check_eval_err("FALSE OR a > b", &bad);
    // ...and the failure is not contained by NOT or by OR on the right.
    check_eval_err("NOT (TRUE AND a > b)", &bad);
    check_eval_err("a > b OR TRUE", &bad);
    // BETWEEN is AND(>=, <=): a FALSE lower test skips the upper bound.
    check("c BETWEEN 5 AND b", &[("c", "1"), ("b", "y")], F);
    check_eval_err("c BETWEEN 0 AND b", &[("c", "1"), ("b", "y")]);
    // NOT BETWEEN is OR(<, >): a TRUE lower test skips the upper bound.
    check("c NOT BETWEEN 5 AND b", &[("c", "1"), ("b", "y")], T);
}

// ---------------------------------------------------------------------------------
// Our own: operators, precedence, keywords, coercions, NULL
// ---------------------------------------------------------------------------------

#[test]
fn each_comparison_operator() {
    let a = [("a", "5")];
    for (expr, want) in [
        ("a = 5", T),
        ("a <> 5", F),
        ("a > 4", T),
        ("a > 5", F),
        ("a >= 5", T),
        ("a < 5", F),
        ("a <= 5", T),
        ("a < 6", T),
        ("5 = a", T),
        ("6 > a", T),
        ("a = '5'", T),
        ("a <> '5'", F),
        ("a = ' 5'", F),
    ] {
        check(expr, &a, want);
    }
    for expr in ["a = 5", "a <> 5", "a > 5", "a >= 5", "a < 5", "a <= 5", "a = 'x'", "a <> 'x'"] {
        check(expr, &[], N);
    }
}

#[test]
fn precedence_and_parentheses() {
    let e = "a = 1 OR b = 2 AND c = 3";
    check(e, &[("a", "1")], T);
    check(e, &[("b", "2"), ("c", "3")], T);
    check(e, &[("a", "0"), ("b", "2"), ("c", "4")], F);
    check(e, &[("b", "2"), ("c", "4")], N);
    let e = "(a = 1 OR b = 2) AND c = 3";
    check(e, &[("a", "1")], N);
    check(e, &[("a", "1"), ("c", "3")], T);
    check(e, &[("a", "1"), ("c", "4")], F);
    check("((((a = 1))))", &[("a", "1")], T);
    check("((a = 1) AND ((b = 2) OR (c = 3)))", &[("a", "1"), ("c", "3")], T);
    check("NOT NOT (a = 1)", &[("a", "1")], T);
}

#[test]
fn keywords_are_case_insensitive() {
    let e = "a Is NoT nUlL aNd b BeTwEeN 1 AnD 3 oR c iN ('x') AND d nOt CoNtAiNs 'q' \
             and TAGS sTaRtSwItH 'T' and TAGS EndsWith 'A' and t = tRuE and u Not In ('y') and v IS null";
    let kv = [("a", "1"), ("b", "2"), ("d", "p"), ("TAGS", "TagA"), ("t", "true"), ("u", "z")];
    check(e, &kv, T);
    // ...but property names are case-sensitive.
    check("A = 1", &[("a", "1")], N);
}

#[test]
fn not_binds_tighter_than_comparison() {
    // `NOT a = 'x'` is `(NOT a) = 'x'`: boolean vs string fails in Java.
    check_eval_err("NOT a = 'x'", &[("a", "x")]);
    check("NOT a = 'x'", &[], N);
    check("NOT (a = 'x')", &[("a", "y")], T);
    // `(NOT a) = 1`: boolean vs int is plain "not equal".
    check("NOT a = 1", &[("a", "1")], F);
    // `NOT a IS NULL` is `(NOT a) IS NULL`, the same as `a IS NULL`.
    check("NOT a IS NULL", &[], T);
    check("NOT a IS NULL", &[("a", "1")], F);
    // Ordering a NOT is a compile error, as in Java.
    assert!(matches!(compile_err("NOT a > 1"), SqlError::NotOrderable { position: 0, .. }));
    // `a NOT = 1`: Java ignores `NOT = 1`; we reject trailing input.
    assert!(matches!(compile_err("a NOT = 1"), SqlError::UnexpectedToken { position: 2, .. }));
}

#[test]
fn bare_properties_and_constants_as_conditions() {
    check("a", &[("a", "true")], F);
    check("a", &[], N);
    check("NOT a", &[("a", "x")], T);
    check("NOT a", &[], N);
    check("TRUE", &[], T);
    check("FALSE", &[], F);
    check("NULL", &[], N);
    check("(a) OR TRUE", &[], T);
}

#[test]
fn null_semantics_follow_java_equality() {
    check("a = b", &[], T);
    check("a <> b", &[], F);
    check("a = b", &[("a", "1")], F);
    check("a = b", &[("b", "1")], N);
    check("'x' = a", &[], F);
    check("NOT ('x' = a)", &[], T);
    check("a = 'x'", &[], N);
    check("NOT (a = 'x')", &[], N);
    check("NULL IS NULL", &[], T);
    check("'x' IS NULL", &[], F);
    check("5 IS NOT NULL", &[], T);
    check("a IS NULL IS NULL", &[], F);
    check("a > b", &[("a", "1")], N);
    check("a IN ('x')", &[], N);
    check("a NOT IN ('x')", &[], N);
    check("a BETWEEN 1 AND 2", &[], N);
    check("a NOT BETWEEN 1 AND 2", &[], N);
    check("-a = 1", &[("a", "1")], N);
}

#[test]
fn numeric_coercions_follow_the_literal_type() {
    // Integer literal: the property is read with Integer.valueOf.
    check("a = 5", &[("a", "05")], T);
    check("a = 5", &[("a", "+5")], T);
    check_eval_err("a = 5", &[("a", "5.0")]);
    check_eval_err("a = 5", &[("a", " 5")]);
    check_eval_err("a > 5", &[("a", "5.5")]);
    check_eval_err("a > 5", &[("a", "3000000000")]);
    check_eval_err("a <> 5", &[("a", "abc")]);
    check_eval_err("a > 5L", &[("a", "3000000000")]);
    // Long literal (does not fit an int): Long.valueOf.
    check("a > 3000000000", &[("a", "3000000001")], T);
    check("a = 2147483648", &[("a", "2147483648")], T);
    check_eval_err("a = 2147483647", &[("a", "2147483648")]);
    check("a = -2147483648", &[("a", "-2147483648")], T);
    check("a = 9223372036854775807", &[("a", "9223372036854775807")], T);
    // Double literal: Double.valueOf (trims, accepts exponents, NaN, Infinity, suffixes).
    check("a > 5.0", &[("a", "5.5")], T);
    check("a > 5.0", &[("a", " 6 ")], T);
    check("a > 5.0", &[("a", "1e3")], T);
    check("a > 5.0", &[("a", "6d")], T);
    check("a > 5.0", &[("a", "NaN")], T);
    check("a < 5.0", &[("a", "-Infinity")], T);
    check("a = 5.0", &[("a", "5")], T);
    check_eval_err("a > 5.0", &[("a", "five")]);
    check_eval_err("a > 5.0", &[("a", "0x10p0")]);
    // Mixed literal types widen.
    check("5 = 5.0", &[], T);
    check("2147483648 > 5", &[], T);
    check("5 < 5.5", &[], T);
    // Two properties are ordered as doubles, compared for equality as strings.
    check("a > b", &[("a", "10"), ("b", "9.5")], T);
    check("a = b", &[("a", "1"), ("b", "1.0")], F);
    check_eval_err("a > b", &[("a", "10"), ("b", "x")]);
}

#[test]
fn boolean_coercions() {
    check("a = TRUE", &[("a", "True")], T);
    check("a = TRUE", &[("a", "yes")], F);
    check("a = FALSE", &[("a", "yes")], T);
    check("a <> TRUE", &[("a", "TRUE")], F);
    check_eval_err("TRUE = a", &[("a", "true")]);
    check("TRUE = a", &[], F);
    check("TRUE = FALSE", &[], F);
    check("1 = TRUE", &[], F);
    check("(a = 1) = TRUE", &[("a", "1")], T);
    check("(a = 1) = (b = 2)", &[("a", "1"), ("b", "3")], F);
}

#[test]
fn unary_operators() {
    check("a > -5", &[("a", "-4")], T);
    check("a = - -5", &[("a", "5")], T);
    check("a = +5", &[("a", "5")], T);
    check("a = -(-(5))", &[("a", "5")], T);
    check("a = -5.5", &[("a", "-5.5")], T);
    check("-a > 5", &[("a", "-9")], N); // a string negates to NULL
    check("-'x' = a", &[("a", "x")], N);
    // Bounds that are negations are not literals in Java: no reversed-bounds check.
    check("a BETWEEN -1 AND -5", &[("a", "-3")], F);
    check("a BETWEEN -5 AND -1", &[("a", "-3")], T);
    // `--` starts a comment, even before a number.
    assert!(matches!(compile_err("a > --5"), SqlError::UnexpectedToken { position: 7, .. }));
}

#[test]
fn in_lists() {
    let many = "a IN ('k', 'j', 'i', 'h', 'g', 'f', 'e', 'd', 'c', 'b', 'a', 'a')";
    for v in ["a", "e", "k"] {
        check(many, &[("a", v)], T);
    }
    check(many, &[("a", "z")], F);
    check(many, &[("a", "")], N); // an empty value is no property
    check("a IN ('it''s')", &[("a", "it's")], T);
    check("(a) IN ('x')", &[("a", "x")], T);
    assert_eq!(compile_err("'x' IN ('x')"), SqlError::InNeedsProperty { position: 0 });
    assert!(matches!(compile_err("a IN ()"), SqlError::UnexpectedToken { position: 6, .. }));
    assert!(matches!(compile_err("a IN ('x',)"), SqlError::UnexpectedToken { position: 10, .. }));
    assert!(matches!(compile_err("a IN (1)"), SqlError::UnexpectedToken { position: 6, .. }));
    assert!(matches!(compile_err("a IN 'x'"), SqlError::UnexpectedToken { position: 5, .. }));
}

#[test]
fn between_bounds() {
    check("a BETWEEN 1 AND 1", &[("a", "1")], T);
    check("a BETWEEN 1 AND 1.5", &[("a", "1")], T);
    check("a BETWEEN 1.0 AND 2", &[("a", "1")], T);
    // Each bound converts the property with its own type: `1.5` is no int for `<= 2`.
    check_eval_err("a BETWEEN 1.0 AND 2", &[("a", "1.5")]);
    assert_eq!(compile_err("a BETWEEN 2 AND 1.5"), SqlError::BetweenBoundsReversed { position: 10 });
    // NOT BETWEEN has no such check in Java.
    check("a NOT BETWEEN 10 AND 0", &[("a", "5")], T);
    assert!(matches!(compile_err("a BETWEEN 'a' AND 'b'"), SqlError::NotOrderable { position: 10, .. }));
    assert!(matches!(compile_err("a BETWEEN NULL AND 1"), SqlError::NotOrderable { position: 10, .. }));
    assert!(matches!(compile_err("TRUE BETWEEN 1 AND 2"), SqlError::NotOrderable { position: 0, .. }));
    assert!(matches!(compile_err("a BETWEEN 1 2"), SqlError::UnexpectedToken { position: 12, .. }));
}

#[test]
fn literals_and_comments() {
    check("a = 'O''Reilly'", &[("a", "O'Reilly")], T);
    check("a = ''''", &[("a", "'")], T);
    check("a = 'multi\nline'", &[("a", "multi\nline")], T);
    check("a = 'ünïcødé'", &[("a", "ünïcødé")], T);
    check("$a_1 = 1 AND _b$ = 2", &[("$a_1", "1"), ("_b$", "2")], T);
    check("a = 1 -- trailing comment", &[("a", "1")], T);
    check("/* lead */ a = 1 /* mid */ AND b = 2 -- c\r\n", &[("a", "1"), ("b", "2")], T);
    check("a = 1 -- c\n AND b = 2", &[("a", "1"), ("b", "3")], F);
    check("\ta\n=\r1\x0c", &[("a", "1")], T);
    check("a = 5l", &[("a", "5")], T);
    check("a > 4.9E-324", &[("a", "1")], T);
}

#[test]
fn compile_time_checks() {
    assert_eq!(compile_err("a = NULL"), SqlError::NullComparison { position: 4 });
    assert_eq!(compile_err("NULL <> a"), SqlError::NullComparison { position: 0 });
    assert_eq!(compile_err("TRUE = 1"), SqlError::IncompatibleLiterals { position: 0 });
    assert_eq!(compile_err("FALSE = 'x'"), SqlError::IncompatibleLiterals { position: 0 });
    for (expr, position) in [("a > 'x'", 4), ("a < TRUE", 4), ("a >= NULL", 5), ("(a = 1) > 1", 1), ("'x' <= a", 0)] {
        assert!(matches!(compile_err(expr), SqlError::NotOrderable { position: p, .. } if p == position), "{expr:?}");
    }
    assert_eq!(compile_err("a > 0.0"), SqlError::FloatOutOfRange { position: 4 });
    assert_eq!(compile_err("a > 0e5"), SqlError::FloatOutOfRange { position: 4 });
    assert_eq!(compile_err("a > 1e-400"), SqlError::FloatOutOfRange { position: 4 });
    assert_eq!(compile_err("a > 1e400"), SqlError::FloatOutOfRange { position: 4 });
    assert_eq!(compile_err("a > 9223372036854775808"), SqlError::IntegerOutOfRange { position: 4 });
    assert_eq!(compile_err("5"), SqlError::NotBoolean { position: 0 });
    assert_eq!(compile_err("'x'"), SqlError::NotBoolean { position: 0 });
    assert_eq!(compile_err("-a"), SqlError::NotBoolean { position: 0 });
    assert_eq!(compile_err("NOT 5"), SqlError::NotBoolean { position: 4 });
    assert_eq!(compile_err("a = 1 AND 5"), SqlError::NotBoolean { position: 10 });
}

#[test]
fn syntax_errors_carry_positions() {
    let cases: &[(&str, SqlError)] = &[
        ("", SqlError::UnexpectedToken { position: 0, expected: "an expression", found: "end of input".into() }),
        ("   ", SqlError::UnexpectedToken { position: 3, expected: "an expression", found: "end of input".into() }),
        ("a >", SqlError::UnexpectedToken { position: 3, expected: "an expression", found: "end of input".into() }),
        (
            "a = 1 b = 2",
            SqlError::UnexpectedToken {
                position: 6,
                expected: "an operator or the end of the expression",
                found: "`b`".into(),
            },
        ),
        ("(a = 1", SqlError::UnexpectedToken { position: 6, expected: "`)`", found: "end of input".into() }),
        (
            "a = 1)",
            SqlError::UnexpectedToken {
                position: 5,
                expected: "an operator or the end of the expression",
                found: "`)`".into(),
            },
        ),
        (
            "a IS 5",
            SqlError::UnexpectedToken { position: 5, expected: "NULL or NOT NULL after IS", found: "`5`".into() },
        ),
        ("a IS NOT 5", SqlError::UnexpectedToken { position: 9, expected: "NULL after IS NOT", found: "`5`".into() }),
        (
            "a = 0123",
            SqlError::UnexpectedToken {
                position: 5,
                expected: "an operator or the end of the expression",
                found: "`123`".into(),
            },
        ),
        ("a = 'x", SqlError::UnterminatedString { position: 4 }),
        ("a = 1 /* x", SqlError::UnterminatedComment { position: 6 }),
        ("a != 1", SqlError::BangEquals { position: 2 }),
        ("a.b = 1", SqlError::UnexpectedChar { position: 1, found: '.' }),
        ("a = 1 && b = 2", SqlError::UnexpectedChar { position: 6, found: '&' }),
        ("a\u{a0}= 1", SqlError::UnexpectedChar { position: 1, found: '\u{a0}' }),
        ("é = 1", SqlError::UnexpectedChar { position: 0, found: 'é' }),
        ("a == 1", SqlError::UnexpectedToken { position: 3, expected: "an expression", found: "`=`".into() }),
    ];
    for (expr, want) in cases {
        let got = compile_err(expr);
        assert_eq!(&got, want, "{expr:?}");
        assert_eq!(got.position(), want.position());
    }
    // Display text is what the broker sends as the remark.
    assert_eq!(
        compile_err("a = 1 b = 2").to_string(),
        "expected an operator or the end of the expression at position 6, found `b`"
    );
    assert_eq!(compile_err("a != 1").to_string(), "`!=` at position 2 is not SQL92 as RocketMQ speaks it, use `<>`");
    // Long tokens are cut in the message.
    let long = format!("a = 1 {}", "x".repeat(100));
    assert!(matches!(compile_err(&long), SqlError::UnexpectedToken { found, .. } if found.chars().count() < 50));
}

#[test]
fn limits_guard_pathological_input() {
    let at_limit = format!("a = '{}'", "x".repeat(MAX_EXPRESSION_LEN - 6));
    assert_eq!(at_limit.len(), MAX_EXPRESSION_LEN);
    SqlFilter::compile(&at_limit).unwrap();
    let over = format!("a = '{}'", "x".repeat(MAX_EXPRESSION_LEN - 5));
    assert_eq!(compile_err(&over), SqlError::TooLong { len: MAX_EXPRESSION_LEN + 1, max: MAX_EXPRESSION_LEN });
    assert_eq!(compile_err(&over).position(), None);

    let parens = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
    SqlFilter::compile(&parens(MAX_DEPTH)).unwrap();
    assert_eq!(compile_err(&parens(MAX_DEPTH + 1)), SqlError::TooDeep { position: MAX_DEPTH, max: MAX_DEPTH });
    assert!(matches!(compile_err(&"(".repeat(5000)), SqlError::TooDeep { .. }));
    assert!(matches!(compile_err(&format!("{}a", "NOT ".repeat(MAX_DEPTH + 1))), SqlError::TooDeep { .. }));
    assert!(matches!(compile_err(&format!("a = {}1", "- ".repeat(MAX_DEPTH + 1))), SqlError::TooDeep { .. }));
    // Left-deep chains that do not recurse in the parser are bounded by tree height.
    assert!(matches!(compile_err(&format!("a = 1{}", " = TRUE".repeat(MAX_DEPTH))), SqlError::TooDeep { .. }));
    // AND/OR chains are flattened, so long flat conditions are fine.
    let wide = (0..600).map(|i| format!("p{i} = 1")).collect::<Vec<_>>().join(" AND ");
    assert!(wide.len() < MAX_EXPRESSION_LEN);
    let f = SqlFilter::compile(&wide).unwrap();
    assert!(!f.matches(&props(&[("p0", "1")])));
    let or = (0..600).map(|i| format!("p{i} = 1")).collect::<Vec<_>>().join(" OR ");
    assert!(SqlFilter::compile(&or).unwrap().matches(&props(&[("p599", "1")])));
}

#[test]
fn filter_is_shareable_and_reports_its_source() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<SqlFilter>();
    let f = SqlFilter::compile("a > 1").unwrap();
    assert_eq!(f.expression(), "a > 1");
    assert_eq!(format!("{f:?}"), "SqlFilter(\"a > 1\")");
}

// ---------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------

/// Fragments that make syntactically interesting soups.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "a",
            "b",
            "TAGS",
            "NOT",
            "AND",
            "OR",
            "BETWEEN",
            "IN",
            "IS",
            "NULL",
            "TRUE",
            "FALSE",
            "CONTAINS",
            "STARTSWITH",
            "ENDSWITH",
            "=",
            "<>",
            ">",
            ">=",
            "<",
            "<=",
            "(",
            ")",
            ",",
            "+",
            "-",
            "'x'",
            "''",
            "'5'",
            "0",
            "5",
            "5L",
            "2147483648",
            "9223372036854775808",
            "1.5",
            "0.0",
            "1e400",
            ".5",
            "--",
            "/*",
            "*/",
            "\n",
            "'",
            "!=",
            "$",
            "é",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,4}",
    ]
}

fn soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(fragment(), 0..24).prop_map(|parts| parts.join(" "))
}

fn prop_map() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            prop::sample::select(vec!["a", "b", "TAGS", "x"]).prop_map(str::to_owned),
            prop_oneof![
                "[0-9]{1,12}",
                "-?[0-9]{1,3}\\.[0-9]{1,3}",
                prop::sample::select(vec!["true", "NaN", "x", "5", " 5", "3000000000", "1e3"]).prop_map(str::to_owned),
                "[^\u{1}\u{2}]{1,8}",
            ],
        ),
        0..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compile_never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
        let _ = SqlFilter::compile(&s);
    }

    #[test]
    fn compile_and_evaluate_never_panic_on_token_soup(expr in soup(), kv in prop_map()) {
        if let Ok(f) = SqlFilter::compile(&expr) {
            let map: Properties = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let encoded = map.encode();
            prop_assert_eq!(f.evaluate(&map), f.evaluate(encoded.as_str()));
        } else if let Err(e) = SqlFilter::compile(&expr) {
            if let Some(p) = e.position() {
                prop_assert!(p <= expr.len());
            }
        }
    }

    #[test]
    fn evaluate_never_panics_on_arbitrary_properties(kv in prop_map(), raw in "\\PC{0,64}") {
        let map: Properties = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for expr in [
            "a > 5 AND b IN ('x', 'y') AND TAGS IS NOT NULL",
            "a BETWEEN 1.5 AND b OR NOT (x = TRUE)",
            "a = b OR a <> 3000000000 OR -a < 0.5",
            "TAGS CONTAINS 'x' OR TAGS NOT ENDSWITH 'y' OR NOT a",
        ] {
            let f = SqlFilter::compile(expr).unwrap();
            let _ = f.matches(&map);
            let _ = f.matches(raw.as_str());
        }
    }

    /// BETWEEN is Java's AND(>=, <=) and NOT BETWEEN its OR(<, >), errors included.
    #[test]
    fn between_is_the_java_desugaring(a in prop::option::of("-?[0-9]{1,3}(\\.[0-9])?|x"),
                                      lo in -50i64..50, span in 0i64..50) {
        let hi = lo + span;
        let kv: Vec<(&str, &str)> = a.iter().map(|v| ("a", v.as_str())).collect();
        let m = props(&kv);
        let f = |e: &str| SqlFilter::compile(e).unwrap().evaluate(&m);
        prop_assert_eq!(f(&format!("a BETWEEN {lo} AND {hi}")), f(&format!("a >= {lo} AND a <= {hi}")));
        prop_assert_eq!(f(&format!("a NOT BETWEEN {lo} AND {hi}")), f(&format!("a < {lo} OR a > {hi}")));
        prop_assert_eq!(f(&format!("a <> {lo}")), f(&format!("NOT (a = {lo})")));
    }
}
