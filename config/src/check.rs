//! Small checks shared by the `validate()` methods.
//!
//! Each takes the key relative to the struct being validated; the caller's
//! section is added by [`Error::within`] on the way up.

use std::time::Duration;

use crate::error::{Error, Invalid, Result};

/// Rejects empty and whitespace-only strings.
pub(crate) fn not_blank(key: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(key, Invalid::Empty));
    }
    Ok(())
}

/// Rejects a zero duration where it would mean a busy loop or an instant
/// timeout rather than "off".
pub(crate) fn non_zero(key: &str, value: Duration) -> Result<()> {
    if value.is_zero() {
        return Err(Error::invalid(key, Invalid::Zero));
    }
    Ok(())
}

/// Rejects a zero count or size.
pub(crate) fn positive(key: &str, value: u64) -> Result<()> {
    if value == 0 {
        return Err(Error::invalid(key, Invalid::Zero));
    }
    Ok(())
}

/// Accepts `host:port` (IPv6 hosts in brackets), the form RocketMQ uses for
/// every address it exchanges, with a non-zero port.
pub(crate) fn host_port(key: &str, value: &str) -> Result<()> {
    let malformed =
        || Error::invalid(key, Invalid::Malformed { value: value.to_owned(), expected: "a host:port address" });
    let (host, port) = value.rsplit_once(':').ok_or_else(malformed)?;
    let host_ok = !host.is_empty() && !host.contains(|c: char| c.is_whitespace() || c == ';');
    let port_ok = port.parse::<u16>().is_ok_and(|port| port != 0);
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(malformed())
    }
}

/// Two listeners on the same fixed port would make the second bind fail at
/// start-up; port 0 asks the OS for a free port, so it never clashes.
pub(crate) fn distinct_ports(key: &str, port: u16, other: &'static str, other_port: u16) -> Result<()> {
    if port != 0 && port == other_port {
        return Err(Error::invalid(key, Invalid::Conflict { other, why: "two listeners cannot share a port" }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_accepts_rocketmq_addresses() {
        for ok in ["127.0.0.1:9876", "namesrv-0.ns:9876", "[::1]:9876"] {
            assert!(host_port("k", ok).is_ok(), "{ok}");
        }
        for bad in ["127.0.0.1", ":9876", "a:0", "a:99999", "a b:1", "a:x", ""] {
            assert!(host_port("k", bad).is_err(), "{bad}");
        }
    }
}
