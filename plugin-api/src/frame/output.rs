//! The results of a call: the output area's size per call, the host's validating
//! readers (`read_*`: a wrong length, an unknown code or an out-of-range index is
//! [`PluginError::BadOutput`], never a panic) and the guest's writers (`put_*`).

use super::{layout, Call};
use crate::error::PluginError;
use crate::types::{CheckDecision, Verdict, NO_QUEUE};

/// Exact output size of a call with `records` records (for `allocate`: the capacity,
/// 4 bytes per queue).
pub const fn output_len(call: Call, records: usize, queues: usize) -> usize {
    match call {
        Call::Init => 0,
        Call::Prefilter | Call::Filter => records,
        Call::Select => records * 4,
        Call::Allocate => queues * 4,
        Call::Check => records * layout::decision::SIZE,
    }
}

fn expect_len(out: &[u8], want: usize, what: &str) -> Result<(), PluginError> {
    if out.len() == want {
        Ok(())
    } else {
        Err(PluginError::bad_output(format!("{what}: expected {want} bytes, got {}", out.len())))
    }
}

/// Reads `filter`/`prefilter` output: one verdict byte per record.
///
/// # Errors
/// [`PluginError::BadOutput`] on a wrong length or an unknown verdict byte.
pub fn read_verdicts(out: &[u8], verdicts: &mut [Verdict]) -> Result<(), PluginError> {
    expect_len(out, verdicts.len(), "filter output")?;
    // Validate all bytes first (a loop the compiler vectorises), then map them: one
    // test and branch per message otherwise, on the hot path of every filter call.
    if out.iter().fold(0, |max, &b| max.max(b)) > Verdict::Error as u8 {
        let i = out.iter().position(|&b| b > Verdict::Error as u8).unwrap_or_default();
        return Err(PluginError::bad_output(format!("verdict byte {} for record {i}", out[i])));
    }
    for (&b, v) in out.iter().zip(verdicts.iter_mut()) {
        *v = match b {
            0 => Verdict::Reject,
            1 => Verdict::Accept,
            _ => Verdict::Error,
        };
    }
    Ok(())
}

/// Reads `select` output: one little-endian `u32` queue index per record;
/// [`NO_QUEUE`] is allowed and means "no choice".
///
/// # Errors
/// [`PluginError::BadOutput`] on a wrong length or an index `>= queues`.
pub fn read_queue_indices(out: &[u8], queues: usize, indices: &mut [u32]) -> Result<(), PluginError> {
    expect_len(out, indices.len() * 4, "select output")?;
    for (i, (c, v)) in out.chunks_exact(4).zip(indices.iter_mut()).enumerate() {
        let q = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if q != NO_QUEUE && q as usize >= queues {
            return Err(PluginError::bad_output(format!("queue index {q} for record {i}, only {queues} queues")));
        }
        *v = q;
    }
    Ok(())
}

/// Reads `allocate` output: a list of little-endian `u32` queue indices, each `< queues`,
/// without duplicates.
///
/// # Errors
/// [`PluginError::BadOutput`] on a length that is not a multiple of 4 or exceeds the
/// capacity, an out-of-range index or a duplicate.
pub fn read_assignment(out: &[u8], queues: usize, assigned: &mut Vec<u32>) -> Result<(), PluginError> {
    if !out.len().is_multiple_of(4) || out.len() > queues * 4 {
        return Err(PluginError::bad_output(format!(
            "allocate output of {} bytes (must be a multiple of 4, at most {})",
            out.len(),
            queues * 4
        )));
    }
    assigned.clear();
    let mut seen = vec![false; queues];
    for c in out.chunks_exact(4) {
        let q = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
        if q >= queues {
            return Err(PluginError::bad_output(format!("queue index {q}, only {queues} queues")));
        }
        if std::mem::replace(&mut seen[q], true) {
            return Err(PluginError::bad_output(format!("queue index {q} assigned twice")));
        }
        assigned.push(q as u32);
    }
    Ok(())
}

/// Reads `check` output: one 8-byte decision record per record.
///
/// # Errors
/// [`PluginError::BadOutput`] on a wrong length or an unknown decision code.
pub fn read_decisions(out: &[u8], decisions: &mut [CheckDecision]) -> Result<(), PluginError> {
    use layout::decision as d;
    expect_len(out, decisions.len() * d::SIZE, "check output")?;
    for (i, (c, v)) in out.chunks_exact(d::SIZE).zip(decisions.iter_mut()).enumerate() {
        let ms = u32::from_le_bytes([c[d::DEFER_MS], c[d::DEFER_MS + 1], c[d::DEFER_MS + 2], c[d::DEFER_MS + 3]]);
        *v = CheckDecision::from_code(c[d::CODE], ms)
            .ok_or_else(|| PluginError::bad_output(format!("decision code {} for record {i}", c[d::CODE])))?;
    }
    Ok(())
}

/// Writes queue index `q` for record `i` into a `select` (or, by position, `allocate`)
/// output area.
///
/// # Panics
/// If `out` is shorter than `4 * (i + 1)` bytes.
#[inline]
pub fn put_u32_le(out: &mut [u8], i: usize, q: u32) {
    out[i * 4..i * 4 + 4].copy_from_slice(&q.to_le_bytes());
}

/// Writes the decision for record `i` into a `check` output area.
///
/// # Panics
/// If `out` is shorter than `8 * (i + 1)` bytes.
#[inline]
pub fn put_decision(out: &mut [u8], i: usize, d: CheckDecision) {
    let at = i * layout::decision::SIZE;
    let ms = if let CheckDecision::Defer { ms } = d { ms } else { 0 };
    out[at..at + 8].copy_from_slice(&[d.code(), 0, 0, 0, 0, 0, 0, 0]);
    out[at + 4..at + 8].copy_from_slice(&ms.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_validated() {
        let mut v = [Verdict::Reject; 3];
        read_verdicts(&[1, 0, 2], &mut v).unwrap();
        assert_eq!(v, [Verdict::Accept, Verdict::Reject, Verdict::Error]);
        assert!(read_verdicts(&[1, 0], &mut v).is_err());
        assert!(read_verdicts(&[1, 0, 7], &mut v).is_err());

        let mut out = [0u8; 8];
        put_u32_le(&mut out, 0, 1);
        put_u32_le(&mut out, 1, NO_QUEUE);
        let mut q = [0u32; 2];
        read_queue_indices(&out, 2, &mut q).unwrap();
        assert_eq!(q, [1, NO_QUEUE]);
        assert!(read_queue_indices(&out, 1, &mut q).is_err());

        let mut a = Vec::new();
        read_assignment(&out[..4], 2, &mut a).unwrap();
        assert_eq!(a, [1]);
        let mut dup = [0u8; 8];
        put_u32_le(&mut dup, 0, 1);
        put_u32_le(&mut dup, 1, 1);
        assert!(read_assignment(&dup, 2, &mut a).unwrap_err().to_string().contains("twice"));
        assert!(read_assignment(&[0; 3], 2, &mut a).is_err());

        let mut out = [0u8; 16];
        put_decision(&mut out, 0, CheckDecision::Commit);
        put_decision(&mut out, 1, CheckDecision::Defer { ms: 700 });
        let mut d = [CheckDecision::Error; 2];
        read_decisions(&out, &mut d).unwrap();
        assert_eq!(d, [CheckDecision::Commit, CheckDecision::Defer { ms: 700 }]);
        out[8] = 9;
        assert!(read_decisions(&out, &mut d).is_err());
    }
}
