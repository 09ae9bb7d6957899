//! Topic and broker permission bits (`PermName`).

pub const PRIORITY: i32 = 0x8;
pub const READ: i32 = 0x4;
pub const WRITE: i32 = 0x2;
/// The topic can serve as an auto-create template (`TBW102` has `READ|WRITE|INHERIT`).
pub const INHERIT: i32 = 0x1;
/// The default permission of a topic and of a broker.
pub const READ_WRITE: i32 = READ | WRITE;

pub fn is_readable(perm: i32) -> bool {
    perm & READ == READ
}

pub fn is_writeable(perm: i32) -> bool {
    perm & WRITE == WRITE
}

pub fn is_inherited(perm: i32) -> bool {
    perm & INHERIT == INHERIT
}

/// Human-readable form used in admin output and error remarks, e.g. `RW-`.
pub fn to_display(perm: i32) -> String {
    let mut s = String::with_capacity(3);
    s.push(if is_readable(perm) { 'R' } else { '-' });
    s.push(if is_writeable(perm) { 'W' } else { '-' });
    s.push(if is_inherited(perm) { 'X' } else { '-' });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        assert!(is_readable(6) && is_writeable(6) && !is_inherited(6));
        assert!(is_inherited(7));
        assert!(!is_writeable(4));
        assert_eq!(to_display(7), "RWX");
        assert_eq!(to_display(4), "R--");
    }
}
