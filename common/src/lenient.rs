//! Serde helpers that accept what RocketMQ clients actually send.
//!
//! The C++ client puts numbers where Java puts strings (and the reverse: `subVersion`
//! as a string), and writes enums as ordinals. These deserializers accept every form;
//! our serializers always emit the canonical Java form.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string holding one")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        if v.fract() == 0.0 && v.abs() < 9.2e18 {
            Ok(v as i64)
        } else {
            Err(E::custom("expected an integer"))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        v.trim().parse().map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<i64, E> {
        Ok(i64::from(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }
}

/// An `i64` given as a number or a numeric string (`null` = 0).
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor)
}

/// An `i32` given as a number or a numeric string (`null` = 0).
pub fn i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = d.deserialize_any(IntVisitor)?;
    i32::try_from(v).map_err(|_| de::Error::custom("integer out of range for i32"))
}

/// An `u64` given as a number or a numeric string.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = d.deserialize_any(IntVisitor)?;
    u64::try_from(v).map_err(|_| de::Error::custom("negative value for an unsigned field"))
}

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean, 0/1, or \"true\"/\"false\"")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        Ok(v != 0)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        Ok(v != 0)
    }

    /// Java's `Boolean.parseBoolean`: only a case-insensitive "true" is true.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v.trim().eq_ignore_ascii_case("true"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// A boolean given as a JSON bool, a number, or a string.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(BoolVisitor)
}

struct StringVisitor;

impl Visitor<'_> for StringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a scalar")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

/// A string that may arrive as a number or bool; `null` becomes empty.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(StringVisitor)
}

/// Declares a C-like enum that serialises as its Java constant name and deserialises
/// from either the name or the ordinal (as the C++ client sends).
#[macro_export]
macro_rules! java_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $java:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The Java constant name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $java),+ }
            }

            /// The Java ordinal.
            pub fn ordinal(self) -> usize {
                Self::ALL.iter().position(|v| *v == self).unwrap_or(0)
            }

            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($java => Some($name::$variant),)+ _ => None }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl ::serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        write!(f, "a {} name or ordinal", stringify!($name))
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        if let Some(x) = $name::from_name(v) {
                            return Ok(x);
                        }
                        // Some clients send the ordinal as a string.
                        match v.parse::<u64>() {
                            Ok(n) => self.visit_u64(n),
                            Err(_) => Err(E::unknown_variant(v, &[$($java),+])),
                        }
                    }
                    fn visit_u64<E: ::serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        $name::ALL.get(v as usize).copied()
                            .ok_or_else(|| E::custom(format!("ordinal {} out of range for {}", v, stringify!($name))))
                    }
                    fn visit_i64<E: ::serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        if v < 0 {
                            return Err(E::custom("negative ordinal"));
                        }
                        self.visit_u64(v as u64)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::i64")]
        a: i64,
        #[serde(deserialize_with = "super::bool")]
        b: bool,
        #[serde(deserialize_with = "super::string")]
        c: String,
        #[serde(deserialize_with = "super::i32")]
        d: i32,
    }

    #[test]
    fn accepts_all_scalar_forms() {
        let t: T = serde_json::from_str(r#"{"a":"17","b":"TRUE","c":4,"d":3}"#).unwrap();
        assert_eq!((t.a, t.b, t.c.as_str(), t.d), (17, true, "4", 3));
        let t: T = serde_json::from_str(r#"{"a":17,"b":1,"c":"x","d":"-2"}"#).unwrap();
        assert_eq!((t.a, t.b, t.c.as_str(), t.d), (17, true, "x", -2));
        let t: T = serde_json::from_str(r#"{"a":0,"b":"yes","c":true,"d":0}"#).unwrap();
        assert!(!t.b, "only \"true\" is true, as in Java");
        assert_eq!(t.c, "true");
        assert!(serde_json::from_str::<T>(r#"{"a":"x","b":1,"c":"","d":0}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a":1,"b":1,"c":"","d":9999999999}"#).is_err());
    }

    crate::java_enum! {
        enum Color { Red = "RED", Green = "GREEN" }
    }

    #[test]
    fn java_enum_reads_names_and_ordinals() {
        assert_eq!(serde_json::from_str::<Color>("\"GREEN\"").unwrap(), Color::Green);
        assert_eq!(serde_json::from_str::<Color>("1").unwrap(), Color::Green);
        assert_eq!(serde_json::from_str::<Color>("\"0\"").unwrap(), Color::Red);
        assert!(serde_json::from_str::<Color>("2").is_err());
        assert!(serde_json::from_str::<Color>("\"BLUE\"").is_err());
        assert_eq!(serde_json::to_string(&Color::Red).unwrap(), "\"RED\"");
        assert_eq!(Color::Green.ordinal(), 1);
    }
}
