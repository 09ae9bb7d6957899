//! Delay levels (`messageDelayLevel`): `"1s 5s 10s 30s 1m 2m ..."`, level N being the
//! N-th entry (1-based). Units: `s`, `m`, `h`, `d`.

use std::time::Duration;

/// RocketMQ's default `messageDelayLevel`.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// A parsed delay-level table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayLevels {
    levels: Vec<Duration>,
}

/// A `messageDelayLevel` string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid delay level `{token}`: expected a number followed by s, m, h or d")]
pub struct DelayLevelError {
    pub token: String,
}

impl DelayLevels {
    /// # Errors
    /// A token that is not `<number><unit>`, or an empty table.
    pub fn parse(spec: &str) -> Result<Self, DelayLevelError> {
        let levels = spec.split_whitespace().map(parse_token).collect::<Result<Vec<_>, _>>()?;
        if levels.is_empty() {
            return Err(DelayLevelError { token: spec.to_owned() });
        }
        Ok(Self { levels })
    }

    /// Number of levels (18 by default).
    pub fn max_level(&self) -> i32 {
        self.levels.len() as i32
    }

    /// Delay of `level` (1-based); levels above the maximum clamp to the maximum, as
    /// RocketMQ does. `None` for levels ≤ 0 (no delay).
    pub fn delay(&self, level: i32) -> Option<Duration> {
        if level <= 0 {
            return None;
        }
        let idx = (level.min(self.max_level()) - 1) as usize;
        Some(self.levels[idx])
    }

    /// `level` clamped into `1..=max_level`.
    pub fn clamp(&self, level: i32) -> i32 {
        level.clamp(1, self.max_level())
    }

    pub fn iter(&self) -> impl Iterator<Item = (i32, Duration)> + '_ {
        self.levels.iter().enumerate().map(|(i, d)| (i as i32 + 1, *d))
    }
}

impl Default for DelayLevels {
    fn default() -> Self {
        Self::parse(DEFAULT_DELAY_LEVELS).expect("default delay levels parse")
    }
}

/// RocketMQ's rule: the last character is the unit (`s`, `m`, `h`, `d`), the rest a
/// whole number.
fn parse_token(token: &str) -> Result<Duration, DelayLevelError> {
    let err = || DelayLevelError { token: token.to_owned() };
    let unit_secs: u64 = match token.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err(err()),
    };
    let number = &token[..token.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let count: u64 = number.parse().map_err(|_| err())?;
    count.checked_mul(unit_secs).map(Duration::from_secs).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table() {
        let d = DelayLevels::default();
        assert_eq!(d.max_level(), 18);
        assert_eq!(d.delay(1), Some(Duration::from_secs(1)));
        assert_eq!(d.delay(3), Some(Duration::from_secs(10)));
        assert_eq!(d.delay(5), Some(Duration::from_secs(60)));
        assert_eq!(d.delay(18), Some(Duration::from_secs(7200)));
        assert_eq!(d.delay(99), Some(Duration::from_secs(7200)));
        assert_eq!(d.delay(0), None);
        assert_eq!(d.delay(-1), None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "1x", "s", "1s 2q", "-1s", "100ms", "99999999999999999999d"] {
            assert!(DelayLevels::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(DelayLevels::parse("2s 1d").unwrap().delay(2), Some(Duration::from_secs(86_400)));
    }
}
