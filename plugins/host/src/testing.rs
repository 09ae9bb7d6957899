//! Hand-written WAT guests for tests (feature `testing`): plugins that follow
//! `plugin-api/README.md` byte by byte — so the spec is exercised from a non-Rust
//! guest — and misbehaving ones (endless loops, memory bombs, traps) to check that the
//! host contains them. Used by this crate's tests and benches and by the end-to-end
//! tests of the broker. Also a [`MockClock`] for the circuit breakers, so a test steps
//! over a cool-down instead of sleeping through it.

use std::sync::Arc;
use std::time::Duration;

use plugin_api::{Manifest, MessageFields, PluginKind, PLUGIN_ABI_VERSION};

use crate::{PluginRegistry, PluginsConfig, Result};

/// A clock that moves only when [`advance`](Self::advance) is called, for the circuit
/// breakers of a registry built with [`registry_with_clock`]. Calls are still timed
/// (latency, native overruns) with the real clock.
#[derive(Clone)]
pub struct MockClock {
    clock: quanta::Clock,
    time: Arc<quanta::Mock>,
}

impl MockClock {
    /// A clock standing still at its start.
    pub fn new() -> MockClock {
        let (clock, time) = quanta::Clock::mock();
        MockClock { clock, time }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.time.increment(by);
    }
}

impl Default for MockClock {
    fn default() -> Self {
        MockClock::new()
    }
}

/// [`PluginRegistry::new`] with circuit breakers that read `clock`.
///
/// # Errors
/// As [`PluginRegistry::new`].
pub fn registry_with_clock(config: PluginsConfig, clock: &MockClock) -> Result<PluginRegistry> {
    PluginRegistry::with_breaker_clock(config, Some(clock.clock.clone()))
}

/// A WAT plugin: bump allocator, static manifest, and the given `fmq_call` body (locals
/// `$i $n $rec $sz $ctx $off $len $qc $cc $cur $k` are declared).
pub struct Wat<'a> {
    /// The manifest's kind.
    pub kind: PluginKind,
    /// The exported ABI marker function (`fmq_abi_v1`).
    pub marker: &'a str,
    /// The manifest's ABI version.
    pub manifest_abi: u32,
    /// Extra imports, in WAT.
    pub imports: &'a str,
    /// The body of `fmq_call`.
    pub body: &'a str,
    /// Extra module fields, in WAT.
    pub extra: &'a str,
    /// The message fields the manifest declares (ABI 1.1); `None` declares nothing.
    pub reads: Option<MessageFields>,
}

impl<'a> Wat<'a> {
    /// A well-formed plugin of `kind` whose `fmq_call` runs `body`.
    pub fn new(kind: PluginKind, body: &'a str) -> Wat<'a> {
        Wat { kind, marker: "fmq_abi_v1", manifest_abi: PLUGIN_ABI_VERSION, imports: "", body, extra: "", reads: None }
    }

    /// The same plugin declaring that it reads only `fields`.
    pub fn reads(self, fields: MessageFields) -> Wat<'a> {
        Wat { reads: Some(fields), ..self }
    }

    /// The module's WAT text.
    pub fn source(&self) -> String {
        let mut m = Manifest::new("wat-test", "1.0.0", self.kind);
        m.abi_version = self.manifest_abi;
        if let Some(fields) = self.reads {
            m.declare_fields(fields);
        }
        let manifest = m.encode();
        let escaped: String = manifest.iter().map(|b| format!("\\{b:02x}")).collect();
        let len = manifest.len();
        format!(
            r#"(module
  {imports}
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 65536))
  (func (export "{marker}"))
  (data (i32.const 1024) "{escaped}")
  (func (export "fmq_alloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1))) (i32.const -1))
        (then (return (i32.const 0))))))
    (global.set $bump (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "fmq_describe") (param $out i32) (param $cap i32) (result i32)
    (if (i32.le_u (i32.const {len}) (local.get $cap))
      (then (memory.copy (local.get $out) (i32.const 1024) (i32.const {len}))))
    (i32.const {len}))
  {extra}
  (func (export "fmq_call") (param $in i32) (param $inlen i32) (param $out i32) (param $cap i32) (result i32)
    (local $i i32) (local $n i32) (local $rec i32) (local $sz i32) (local $ctx i32) (local $off i32)
    (local $len i32) (local $qc i32) (local $cc i32) (local $cur i32) (local $k i32)
    (local.set $n (i32.load offset=16 (local.get $in)))
    (local.set $sz (i32.load offset=20 (local.get $in)))
    (local.set $rec (i32.add (local.get $in) (i32.load offset=24 (local.get $in))))
    (local.set $ctx (i32.add (local.get $in) (i32.load offset=28 (local.get $in))))
    {body}))"#,
            imports = self.imports,
            marker = self.marker,
            extra = self.extra,
            body = self.body,
        )
    }

    /// The compiled module.
    ///
    /// # Panics
    /// If `body`, `imports` or `extra` are not valid WAT.
    pub fn bytes(&self) -> Vec<u8> {
        wat::parse_str(self.source()).expect("valid WAT")
    }
}

/// Filter: accept messages whose tags start with `A`.
pub const FILTER_TAGS_A: &str = r#"
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $off (i32.load offset=64 (local.get $rec)))
      (local.set $len (i32.load offset=68 (local.get $rec)))
      (i32.store8 (i32.add (local.get $out) (local.get $i))
        (i32.and (i32.ne (local.get $len) (i32.const 0))
                 (i32.eq (i32.load8_u (i32.add (local.get $in) (local.get $off))) (i32.const 65))))
      (local.set $rec (i32.add (local.get $rec) (local.get $sz)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $n)"#;

/// Filter: accept every message (the cheapest possible filter: the ABI cost alone).
pub const FILTER_ACCEPT_ALL: &str = r#"
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (local.get $out) (local.get $i)) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $n)"#;

/// Selector: message i goes to queue i % queue_count.
pub const SELECT_MOD: &str = r#"
    (local.set $qc (i32.load offset=12 (local.get $ctx)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))) (i32.rem_u (local.get $i) (local.get $qc)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.shl (local.get $n) (i32.const 2))"#;

/// Allocation: queue q belongs to client q % client_count (round robin by circle).
pub const ALLOCATE_CIRCLE: &str = r#"
    (local.set $qc (i32.load offset=20 (local.get $ctx)))
    (local.set $cc (i32.load offset=32 (local.get $ctx)))
    (local.set $cur (i32.load offset=40 (local.get $ctx)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $qc)))
      (if (i32.eq (i32.rem_u (local.get $i) (local.get $cc)) (local.get $cur))
        (then
          (i32.store (i32.add (local.get $out) (i32.shl (local.get $k) (i32.const 2))) (local.get $i))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.shl (local.get $k) (i32.const 2))"#;

/// Check-back: commit when check_count is even, roll back when odd.
pub const CHECK_PARITY: &str = r#"
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 3)))
        (select (i32.const 2) (i32.const 1) (i32.and (i32.load offset=52 (local.get $rec)) (i32.const 1))))
      (i32.store (i32.add (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 3))) (i32.const 4)) (i32.const 0))
      (local.set $rec (i32.add (local.get $rec) (local.get $sz)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.shl (local.get $n) (i32.const 3))"#;

/// Never returns.
pub const INFINITE_LOOP: &str = "(loop $l (br $l)) (unreachable)";
/// Grows memory until refused, then traps.
pub const MEMORY_BOMB: &str = "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (unreachable)";
/// Traps at once.
pub const TRAP: &str = "(unreachable)";
/// Reports an error (status -1).
pub const FAIL: &str = "(i32.const -1)";
