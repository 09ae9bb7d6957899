//! Permissions, as RocketMQ's `Permission`: bits, their spelling in `plain_acl.yml`,
//! and whether what an account holds covers what a request needs.

/// A set of permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm(u8);

impl Perm {
    pub const DENY: Perm = Perm(1);
    pub const ANY: Perm = Perm(2);
    pub const PUB: Perm = Perm(4);
    pub const SUB: Perm = Perm(8);
    pub const PUB_SUB: Perm = Perm(4 | 8);

    /// RocketMQ's `parsePermFromString`: `PUB`, `SUB`, `PUB|SUB`, `SUB|PUB` and `DENY`
    /// (trimmed, case-sensitive); anything else — `ANY`, lowercase, nothing — denies.
    pub fn parse(s: Option<&str>) -> Perm {
        match s.map(str::trim) {
            Some("PUB") => Perm::PUB,
            Some("SUB") => Perm::SUB,
            Some("PUB|SUB" | "SUB|PUB") => Perm::PUB_SUB,
            _ => Perm::DENY,
        }
    }

    /// Whether `s` is one of the spellings [`Perm::parse`] reads as itself (what an
    /// administrator may write; `parse` denies anything else).
    pub fn is_spelled_right(s: &str) -> bool {
        matches!(s.trim(), "PUB" | "SUB" | "PUB|SUB" | "SUB|PUB" | "DENY")
    }

    /// The spelling written back to the file.
    pub fn as_str(self) -> &'static str {
        match self.0 {
            4 => "PUB",
            8 => "SUB",
            12 => "PUB|SUB",
            _ => "DENY",
        }
    }

    /// Whether `self`, held, grants `needed` (RocketMQ's `checkPermission`): DENY
    /// grants nothing, ANY is granted by PUB or SUB, otherwise a common bit.
    pub fn grants(self, needed: Perm) -> bool {
        if self.0 & Perm::DENY.0 != 0 {
            return false;
        }
        if needed.0 & Perm::ANY.0 != 0 {
            return self.0 & (Perm::PUB.0 | Perm::SUB.0) != 0;
        }
        self.0 & needed.0 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(Perm::parse(Some("PUB")), Perm::PUB);
        assert_eq!(Perm::parse(Some(" SUB ")), Perm::SUB);
        assert_eq!(Perm::parse(Some("PUB|SUB")), Perm::PUB_SUB);
        assert_eq!(Perm::parse(Some("SUB|PUB")), Perm::PUB_SUB);
        for denied in [Some("DENY"), Some("ANY"), Some("pub"), Some(""), Some("PUB | SUB"), None] {
            assert_eq!(Perm::parse(denied), Perm::DENY, "{denied:?}");
        }
        assert!(Perm::is_spelled_right("DENY") && !Perm::is_spelled_right("ANY"));
    }

    #[test]
    fn grants() {
        assert!(Perm::PUB.grants(Perm::PUB));
        assert!(!Perm::PUB.grants(Perm::SUB));
        assert!(Perm::PUB_SUB.grants(Perm::SUB));
        assert!(!Perm::DENY.grants(Perm::PUB));
        assert!(!Perm::DENY.grants(Perm::DENY));
        assert!(Perm::SUB.grants(Perm::ANY));
        assert!(!Perm::DENY.grants(Perm::ANY));
    }
}
