//! Unit-test a plugin on the host with `cargo test`, no broker needed.
//!
//! [`Harness`] runs the plugin exactly as the broker would, minus the sandbox: it
//! encodes the inputs into the same frames (`plugin_api::frame`), calls the code the
//! macro generated, and validates the output with the same checks as the host (an
//! out-of-range queue index or a duplicate assignment is an error here too).
//!
//! ```
//! # use sdk_wasm::{Message};
//! #[sdk_wasm::filter]
//! fn only_vip(msg: &Message<'_>) -> bool {
//!     msg.tags() == "vip"
//! }
//!
//! # fn main() {
//! use sdk_wasm::testing::{Harness, TestMessage};
//! let mut h = Harness::new(&FERROMQ_PLUGIN).unwrap();
//! let out = h.filter_bools(&[TestMessage::new("T").tags("vip").view(), TestMessage::new("T").view()]);
//! assert_eq!(out.unwrap(), [true, false]);
//! # }
//! ```
//!
//! To test the built `.wasm` itself (sandbox, limits, the exact bytes you ship), load it
//! with `plugin-host`'s `PluginRegistry`, as `plugins/host/tests/examples.rs` does.

use plugin_api::frame::{self, Call};
use plugin_api::types::encode_properties;
use plugin_api::{
    AllocateInput, CheckContext, CheckDecision, ClientView, CqUnit, FilterContext, Manifest, MessageView, PluginError,
    QueueView, SelectContext, Verdict,
};

use crate::{rt, PluginDef, State};

/// Runs a plugin's generated code through real frames.
pub struct Harness {
    def: &'static PluginDef,
    state: State,
    frame: Vec<u8>,
    out: Vec<u8>,
}

impl Harness {
    /// Initialises the plugin with an empty config.
    ///
    /// # Errors
    /// The plugin's init error.
    pub fn new(def: &'static PluginDef) -> Result<Harness, PluginError> {
        Harness::with_config(def, &[])
    }

    /// Initialises the plugin with a config, through an `init` frame.
    ///
    /// # Errors
    /// The plugin's init error, or a manifest the host would refuse.
    pub fn with_config(def: &'static PluginDef, config: &[(&str, &str)]) -> Result<Harness, PluginError> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = rt::describe(def, &mut buf);
        Manifest::decode(&buf[..n as usize])?;
        let mut frame = Vec::new();
        frame::encode_config(&mut frame, config.iter().copied()).map_err(|e| PluginError::init(e.to_string()))?;
        let state = rt::init(def, &frame)
            .map_err(|code| PluginError::init(format!("init returned {code}: {}", last_error())))?;
        Ok(Harness { def, state, frame, out: Vec::new() })
    }

    /// The manifest, as the host would decode it.
    pub fn manifest(&self) -> Manifest {
        self.def.manifest()
    }

    fn run(&mut self, out_cap: usize) -> Result<&[u8], PluginError> {
        self.out.clear();
        self.out.resize(out_cap, 0xAA);
        let n = rt::call(self.def, Some(&*self.state), &self.frame, &mut self.out);
        if n < 0 {
            return Err(PluginError::Failed { code: n, message: last_error() });
        }
        Ok(&self.out[..n as usize])
    }

    /// Runs `filter` with a default subscription.
    ///
    /// # Errors
    /// What the host would report.
    pub fn filter(&mut self, msgs: &[MessageView<'_>]) -> Result<Vec<Verdict>, PluginError> {
        self.filter_with(&FilterContext::default(), msgs)
    }

    /// Runs `filter` and maps verdicts to booleans (`Error` becomes an error).
    ///
    /// # Errors
    /// What the host would report, or the first undecided message.
    pub fn filter_bools(&mut self, msgs: &[MessageView<'_>]) -> Result<Vec<bool>, PluginError> {
        self.filter(msgs)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Verdict::Error => {
                    Err(PluginError::Failed { code: -1, message: format!("message {i}: {}", last_error()) })
                }
                v => Ok(v == Verdict::Accept),
            })
            .collect()
    }

    /// Runs `filter` for a subscription.
    ///
    /// # Errors
    /// What the host would report.
    pub fn filter_with(
        &mut self,
        ctx: &FilterContext<'_>,
        msgs: &[MessageView<'_>],
    ) -> Result<Vec<Verdict>, PluginError> {
        let fields = self.def.manifest().message_fields();
        frame::encode_filter(&mut self.frame, ctx, msgs, fields).map_err(|e| PluginError::bad_output(e.to_string()))?;
        let mut v = vec![Verdict::Error; msgs.len()];
        frame::read_verdicts(self.run(msgs.len())?, &mut v)?;
        Ok(v)
    }

    /// Runs `prefilter`.
    ///
    /// # Errors
    /// What the host would report.
    pub fn prefilter(&mut self, units: &[CqUnit]) -> Result<Vec<Verdict>, PluginError> {
        frame::encode_prefilter(&mut self.frame, &FilterContext::default(), units)
            .map_err(|e| PluginError::bad_output(e.to_string()))?;
        let mut v = vec![Verdict::Error; units.len()];
        frame::read_verdicts(self.run(units.len())?, &mut v)?;
        Ok(v)
    }

    /// Runs `select`.
    ///
    /// # Errors
    /// What the host would report.
    pub fn select(&mut self, queues: &[QueueView<'_>], msgs: &[MessageView<'_>]) -> Result<Vec<u32>, PluginError> {
        frame::encode_select(
            &mut self.frame,
            &SelectContext { topic: msgs.first().map_or("", |m| m.topic), queues },
            msgs,
            self.def.manifest().message_fields(),
        )
        .map_err(|e| PluginError::bad_output(e.to_string()))?;
        let mut q = vec![0; msgs.len()];
        frame::read_queue_indices(self.run(msgs.len() * 4)?, queues.len(), &mut q)?;
        Ok(q)
    }

    /// Runs `allocate`.
    ///
    /// # Errors
    /// What the host would report.
    pub fn allocate(&mut self, input: &AllocateInput<'_>) -> Result<Vec<u32>, PluginError> {
        frame::encode_allocate(&mut self.frame, input).map_err(|e| PluginError::bad_output(e.to_string()))?;
        let mut out = Vec::new();
        frame::read_assignment(
            self.run(frame::output_len(Call::Allocate, 0, input.queues.len()))?,
            input.queues.len(),
            &mut out,
        )?;
        Ok(out)
    }

    /// Runs `allocate` for every client and checks the answers partition the queues
    /// (each queue owned exactly once), as every group must.
    ///
    /// # Errors
    /// A plugin error, or a description of the broken invariant.
    pub fn allocate_all(
        &mut self,
        group: &str,
        queues: &[QueueView<'_>],
        clients: &[ClientView<'_>],
    ) -> Result<Vec<Vec<u32>>, PluginError> {
        let mut owner = vec![None; queues.len()];
        let mut all = Vec::new();
        for (c, client) in clients.iter().enumerate() {
            let mine = self.allocate(&AllocateInput { group, current_client: client.client_id, queues, clients })?;
            for &q in &mine {
                if let Some(prev) = owner[q as usize].replace(c) {
                    return Err(PluginError::bad_output(format!("queue {q} assigned to clients {prev} and {c}")));
                }
            }
            all.push(mine);
        }
        if let Some(q) = owner.iter().position(Option::is_none) {
            return Err(PluginError::bad_output(format!("queue {q} assigned to no client")));
        }
        Ok(all)
    }

    /// Runs `check`.
    ///
    /// # Errors
    /// What the host would report.
    pub fn check(&mut self, ctx: &CheckContext, msgs: &[MessageView<'_>]) -> Result<Vec<CheckDecision>, PluginError> {
        let fields = self.def.manifest().message_fields();
        frame::encode_check(&mut self.frame, ctx, msgs, fields).map_err(|e| PluginError::bad_output(e.to_string()))?;
        let mut d = vec![CheckDecision::Error; msgs.len()];
        frame::read_decisions(self.run(msgs.len() * frame::layout::decision::SIZE)?, &mut d)?;
        Ok(d)
    }
}

fn last_error() -> String {
    let mut buf = vec![0u8; 1024];
    let n = rt::last_error_into(&mut buf);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// An owned sample message for tests; [`TestMessage::view`] borrows it as the
/// [`MessageView`] the harness takes.
#[derive(Debug, Clone, Default)]
pub struct TestMessage {
    topic: String,
    tags: String,
    keys: String,
    props: Vec<(String, String)>,
    raw_props: Vec<u8>,
    body: Vec<u8>,
    arg: Vec<u8>,
    /// Queue id.
    pub queue_id: u32,
    /// Queue offset.
    pub queue_offset: i64,
    /// Store time (epoch ms).
    pub store_timestamp: i64,
    /// Born time (epoch ms).
    pub born_timestamp: i64,
    /// Reconsume times.
    pub reconsume_times: u32,
    /// Check-back count.
    pub check_count: u32,
}

impl TestMessage {
    /// A message on `topic`.
    pub fn new(topic: &str) -> TestMessage {
        TestMessage { topic: topic.to_owned(), ..Default::default() }
    }
    /// Sets the tags (also the `TAGS` property and the tags code, as a producer would).
    pub fn tags(mut self, tags: &str) -> TestMessage {
        self.tags = tags.to_owned();
        self.property("TAGS", tags)
    }
    /// Sets the keys (also the `KEYS` property).
    pub fn keys(mut self, keys: &str) -> TestMessage {
        self.keys = keys.to_owned();
        self.property("KEYS", keys)
    }
    /// Adds a property.
    pub fn property(mut self, name: &str, value: &str) -> TestMessage {
        self.props.push((name.to_owned(), value.to_owned()));
        self.raw_props = encode_properties(self.props.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self
    }
    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> TestMessage {
        self.body = body.into();
        self
    }
    /// Sets the selector argument.
    pub fn arg(mut self, arg: impl Into<Vec<u8>>) -> TestMessage {
        self.arg = arg.into();
        self
    }
    /// Sets the check-back count.
    pub fn check_count(mut self, n: u32) -> TestMessage {
        self.check_count = n;
        self
    }
    /// The view the harness (and the host) takes.
    pub fn view(&self) -> MessageView<'_> {
        MessageView {
            topic: &self.topic,
            tags: &self.tags,
            keys: &self.keys,
            properties: &self.raw_props,
            body: Some(&self.body),
            body_size: self.body.len() as u32,
            queue_id: self.queue_id,
            queue_offset: self.queue_offset,
            commit_log_offset: 0,
            store_timestamp: self.store_timestamp,
            born_timestamp: self.born_timestamp,
            tags_code: plugin_api::builtin::tags_code(&self.tags),
            reconsume_times: self.reconsume_times,
            check_count: self.check_count,
            arg: &self.arg,
        }
    }
}
