//! A plugin author's local loop: `plugin new` scaffolds a crate (Rust, built to
//! WASM with `sdk-wasm`) or a Lua script for one of the four plugin kinds, with a
//! harness test, sample messages and a README; `plugin build` builds it
//! reproducibly and checks it in the plugin host the broker runs; `plugin test`
//! runs it on sample messages through that host — the same frames, limits and
//! output checks as the broker — and prints each verdict.
//!
//! A project is described by `ferromq-plugin.toml` (name, kind, runtime, artifact,
//! and the `[config]` handed to the plugin's `init`), which `plugin deploy` reads
//! too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use plugin_api::{
    CheckContext, CheckDecision, FilterContext, MessageFilter, MessageView, PluginKind, QueueSelector, QueueView,
    Runtime, TxnCheckHandler, Verdict, NO_QUEUE, PERM_READ, PERM_WRITE,
};
use plugin_host::{PluginConfig, PluginRegistry, PluginsConfig};

use crate::ops::Output;

/// The project file `plugin new` writes and `plugin build/test/deploy` read.
pub const PROJECT_FILE: &str = "ferromq-plugin.toml";

/// The dependency versions FerroMQ itself is built and tested with: a new crate
/// starts from them, so its first build resolves what the SDK was tested against.
const WORKSPACE_LOCK: &str = include_str!("../../Cargo.lock");

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// `ferromq-plugin.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    pub kind: PluginKind,
    pub runtime: Runtime,
    /// The file to deploy, relative to the project directory.
    pub artifact: PathBuf,
    /// Settings handed to the plugin's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl Project {
    /// Reads `<dir>/ferromq-plugin.toml`.
    ///
    /// # Errors
    /// The file is missing or invalid.
    pub fn open(dir: &Path) -> Result<Project> {
        let path = dir.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (made by `ferromq-admin plugin new`)", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not a plugin project file", path.display()))
    }

    /// The artifact's path.
    pub fn artifact_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.artifact)
    }
}

/// The languages `plugin new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate built to WASM with `sdk-wasm`.
    Rust,
    /// A Lua script.
    Lua,
}

fn template(kind: PluginKind, lang: Lang) -> Result<&'static str> {
    Ok(match (kind, lang) {
        (PluginKind::Filter, Lang::Rust) => include_str!("../templates/filter.rs"),
        (PluginKind::QueueSelector, Lang::Rust) => include_str!("../templates/queue_selector.rs"),
        (PluginKind::TxnCheck, Lang::Rust) => include_str!("../templates/txn_check.rs"),
        (PluginKind::Allocation, Lang::Rust) => include_str!("../templates/allocation.rs"),
        (PluginKind::Filter, Lang::Lua) => include_str!("../templates/filter.lua"),
        (PluginKind::QueueSelector, Lang::Lua) => include_str!("../templates/queue_selector.lua"),
        (PluginKind::TxnCheck, Lang::Lua) => include_str!("../templates/txn_check.lua"),
        (PluginKind::Allocation, Lang::Lua) => include_str!("../templates/allocation.lua"),
        #[allow(unreachable_patterns)]
        (other, _) => bail!("no template for {other} plugins"),
    })
}

/// Where `sdk-wasm` is: `--sdk`, else the checkout this tool was built from.
fn sdk_path(sdk: Option<&Path>) -> Result<PathBuf> {
    let path = sdk.map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk-wasm"), Path::to_path_buf);
    path.canonicalize()
        .with_context(|| format!("sdk-wasm not found at {}: pass --sdk <path to FerroMQ's sdk-wasm>", path.display()))
}

/// `plugin new`: creates `<parent>/<name>/`, ready to build and test.
///
/// # Errors
/// An invalid name, an existing directory, or a write failure.
pub fn scaffold(kind: PluginKind, name: &str, lang: Lang, parent: &Path, sdk: Option<&Path>) -> Result<Output> {
    if !config::is_valid_plugin_name(name) {
        bail!("invalid plugin name `{name}`: it must match [a-z0-9][a-z0-9_-]{{0,63}}");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let code = template(kind, lang)?.replace("{name}", name);
    // The template's one setting, with its default, written to the project file.
    let setting = match kind {
        PluginKind::Filter => Some(("tag", "vip")),
        PluginKind::QueueSelector => Some(("key", "ORDER_ID")),
        PluginKind::TxnCheck => Some(("property", "PAID")),
        _ => None,
    };
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let artifact_path = match lang {
        Lang::Rust => {
            let sdk = sdk_path(sdk)?;
            files.push(("Cargo.toml".into(), cargo_toml(name, &sdk)));
            files.push(("Cargo.lock".into(), WORKSPACE_LOCK.to_owned()));
            files.push(("src/lib.rs".into(), code));
            files.push((".gitignore".into(), "/target\n".to_owned()));
            format!("target/{WASM_TARGET}/release/{}.wasm", name.replace('-', "_"))
        }
        Lang::Lua => {
            files.push((format!("{name}.lua").into(), code));
            format!("{name}.lua")
        }
    };
    let project = Project {
        name: name.to_owned(),
        kind,
        runtime: if lang == Lang::Rust { Runtime::Wasm } else { Runtime::Lua },
        artifact: artifact_path.into(),
        config: setting.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
    };
    files.push((PROJECT_FILE.into(), toml::to_string(&project)?));
    files.push(("messages.json".into(), include_str!("../templates/messages.json").to_owned()));
    files.push(("README.md".into(), readme(name, kind, lang)));
    for (path, text) in &files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().context("a parent directory")?)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut listed: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    listed.sort();
    Ok(Output::Done(format!(
        "created {kind} plugin {name} in {}: {}\nnext: cd {} && ferromq-admin plugin build && ferromq-admin plugin test",
        dir.display(),
        listed.join(", "),
        dir.display()
    )))
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [lib]\n# cdylib: the .wasm module; rlib: so `cargo test` links the harness tests.\n\
         crate-type = [\"cdylib\", \"rlib\"]\n\n\
         [dependencies]\nsdk-wasm = {{ path = {:?} }}\n\n\
         # Its own workspace, whatever directory it sits in.\n[workspace]\n",
        sdk.display().to_string()
    )
}

fn readme(name: &str, kind: PluginKind, lang: Lang) -> String {
    let source = match lang {
        Lang::Rust => "`src/lib.rs` (tests at its end: `cargo test`)",
        Lang::Lua => &format!("`{name}.lua`"),
    };
    let bind = match kind {
        PluginKind::Filter => {
            format!("ferromq-admin plugin bind {name} -t <topic> -g <consumer group> --clusterName <cluster>")
        }
        PluginKind::Allocation => {
            "(allocation strategies run in consumers: declare it in the client configuration)".into()
        }
        _ => format!("ferromq-admin plugin bind {name} -t <topic> --clusterName <cluster>"),
    };
    let try_it = match kind {
        PluginKind::Allocation => "ferromq-admin plugin test --queues 8 --clients 3    # each consumer's share, checked to partition the queues",
        _ => "ferromq-admin plugin test --input messages.json      # each sample message's verdict, as a broker decides it",
    };
    format!(
        "# {name}\n\nA FerroMQ {kind} plugin. The code is in {source}; `{PROJECT_FILE}` names it, says where the \
         built artifact is and holds the `config` its `init` receives.\n\n\
         ```sh\nferromq-admin plugin build                          # reproducible build, checked in the plugin host\n\
         {try_it}\n\
         ferromq-admin plugin deploy . --clusterName <cluster> # to every broker; a redeploy is a hot reload\n\
         {bind}\n\
         ferromq-admin plugin status {name} --clusterName <cluster>\n\
         ferromq-admin plugin logs {name} --clusterName <cluster> --follow\n```\n\n\
         Edit `messages.json` to try your own messages: each has `topic`, `tags`, `keys`, `properties` and \
         `body`.\n"
    )
}

/// `plugin build`: builds the project's artifact (a Rust crate for
/// `wasm32-unknown-unknown` with locked dependencies and the reproducible release
/// profile; a Lua script as it is) and loads it in the plugin host, which checks the
/// ABI handshake and the manifest and runs `init` with the project's config.
///
/// # Errors
/// The build or the check failed.
pub fn build(dir: &Path) -> Result<Output> {
    let project = Project::open(dir)?;
    if project.runtime == Runtime::Wasm {
        let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap_or_default();
        let locked = lock.contains(&format!("name = \"{}\"", project.name));
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(dir)
            .args(["build", "--release", "--target", WASM_TARGET])
            .envs(plugin_host::REPRODUCIBLE_RELEASE_PROFILE);
        if locked {
            cmd.arg("--locked");
        }
        // The artifact's path, as cargo reports it (a CARGO_TARGET_DIR moves it).
        cmd.arg("--message-format=json-render-diagnostics").stdout(std::process::Stdio::piped());
        let out = cmd.output().context("running cargo (is Rust installed?)")?;
        if !out.status.success() {
            bail!("cargo build failed ({}); `rustup target add {WASM_TARGET}` if the target is missing", out.status);
        }
        let built = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f.as_str().map(PathBuf::from))
            .find(|f| f.extension().is_some_and(|e| e == "wasm"))
            .context("cargo built no .wasm module (is the crate a cdylib?)")?;
        let artifact = project.artifact_path(dir);
        if built.canonicalize().ok() != artifact.canonicalize().ok() {
            std::fs::create_dir_all(artifact.parent().context("a parent directory")?)?;
            std::fs::copy(&built, &artifact)
                .with_context(|| format!("copying {} to {}", built.display(), artifact.display()))?;
        }
    }
    let loaded = load(dir, &project)?;
    let status = loaded.plugin_status(&project.name).context("the plugin loaded")?;
    Ok(Output::Done(format!(
        "built {} ({} bytes)\nmanifest: {}\nsha256:   {}",
        project.artifact_path(dir).display(),
        std::fs::metadata(project.artifact_path(dir))?.len(),
        status.manifest,
        status.sha256
    )))
}

/// Loads the project's artifact in a plugin host, as a broker would.
fn load(dir: &Path, project: &Project) -> Result<PluginRegistry> {
    let path = project.artifact_path(dir);
    if !path.exists() {
        bail!("{} does not exist: run `ferromq-admin plugin build` first", path.display());
    }
    let mut decl = PluginConfig::new(&project.name, project.kind, project.runtime, path);
    decl.config = project.config.clone();
    decl.watch = Some(false);
    let config = PluginsConfig { watch: false, plugins: vec![decl], ..PluginsConfig::default() };
    PluginRegistry::new(config).map_err(|e| anyhow::anyhow!("the plugin host refused it: {e}"))
}

/// One message of `messages.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SampleMessage {
    topic: String,
    tags: String,
    keys: String,
    properties: BTreeMap<String, String>,
    body: String,
}

/// `plugin test`: runs the project's plugin on `input` (a JSON list of messages)
/// through the plugin host and prints what it decided for each; filters see them as
/// one pull's batch for `group`, queue selectors choose among `queues` queues. An
/// allocation strategy is asked by each of `clients` consumers for its share of
/// `queues` queues, and the answers are checked to partition them.
///
/// # Errors
/// The input does not parse, or the plugin cannot be loaded.
pub fn test(dir: &Path, input: &Path, group: &str, queues: u32, clients: usize) -> Result<Output> {
    let project = Project::open(dir)?;
    if project.kind == PluginKind::Allocation {
        return test_allocation(dir, &project, group, queues, clients);
    }
    let text = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let samples: Vec<SampleMessage> =
        serde_json::from_str(&text).with_context(|| format!("{} is not a JSON list of messages", input.display()))?;
    let registry = load(dir, &project)?;
    let props: Vec<Vec<u8>> = samples
        .iter()
        .map(|m| {
            let mut all: Vec<(&str, &str)> = vec![("TAGS", m.tags.as_str()), ("KEYS", m.keys.as_str())];
            all.retain(|(_, v)| !v.is_empty());
            all.extend(m.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            plugin_api::types::encode_properties(all)
        })
        .collect();
    let views: Vec<MessageView> = samples
        .iter()
        .zip(&props)
        .enumerate()
        .map(|(i, (m, p))| MessageView {
            topic: &m.topic,
            tags: &m.tags,
            keys: &m.keys,
            properties: p,
            body: Some(m.body.as_bytes()),
            body_size: m.body.len() as u32,
            queue_offset: i as i64,
            tags_code: if m.tags.is_empty() { 0 } else { i64::from(plugin_api::builtin::java_string_hash(&m.tags)) },
            ..MessageView::default()
        })
        .collect();
    let outcomes: Vec<String> = match project.kind {
        PluginKind::Filter => {
            let plugin = registry.filter(&project.name)?;
            let topic = samples.first().map_or("", |m| m.topic.as_str());
            let ctx = FilterContext { topic, group, expression_type: "TAG", expression: "*" };
            let mut out = vec![Verdict::Error; views.len()];
            match MessageFilter::filter(&plugin, &ctx, &views, &mut out) {
                Ok(()) => out
                    .iter()
                    .map(|v| match v {
                        Verdict::Accept => "deliver".to_owned(),
                        Verdict::Reject => "reject".to_owned(),
                        Verdict::Error => format!("undecided: the failure policy ({}) decides", plugin.policy()),
                    })
                    .collect(),
                Err(e) => vec![format!("error: {e}"); views.len()],
            }
        }
        PluginKind::QueueSelector => {
            let plugin = registry.queue_selector(&project.name)?;
            let table: Vec<QueueView> = (0..queues.max(1))
                .map(|q| QueueView { broker_name: "broker-a", queue_id: q, perm: PERM_READ | PERM_WRITE, zone: "" })
                .collect();
            let topic = samples.first().map_or("", |m| m.topic.as_str());
            let ctx = plugin_api::SelectContext { topic, queues: &table };
            let mut out = vec![NO_QUEUE; views.len()];
            match QueueSelector::select(&plugin, &ctx, &views, &mut out) {
                Ok(()) => out
                    .iter()
                    .map(|q| match table.get(*q as usize) {
                        Some(v) => format!("queue {}", v.queue_id),
                        None => "none: the built-in choice".to_owned(),
                    })
                    .collect(),
                Err(e) => vec![format!("error: {e}"); views.len()],
            }
        }
        PluginKind::TxnCheck => {
            let plugin = registry.txn_check(&project.name)?;
            let now_ms = i64::try_from(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()),
            )
            .unwrap_or(0);
            let ctx = CheckContext { now_ms, max_checks: 15 };
            let mut out = vec![CheckDecision::Error; views.len()];
            match TxnCheckHandler::check(&plugin, &ctx, &views, &mut out) {
                Ok(()) => out.iter().map(|d| format!("{d:?}")).collect(),
                Err(e) => vec![format!("error: {e}"); views.len()],
            }
        }
        other => bail!(
            "`plugin test` runs broker-side plugins; a {other} plugin runs in consumers: test it with `cargo test`"
        ),
    };
    let column = match project.kind {
        PluginKind::Filter => "Verdict",
        PluginKind::QueueSelector => "Queue",
        _ => "Decision",
    };
    let mut rows: Vec<Vec<String>> = samples
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(i, (m, outcome))| vec![(i + 1).to_string(), m.topic.clone(), m.tags.clone(), m.keys.clone(), outcome])
        .collect();
    for line in plugin_host::logs::since(&project.name, 0) {
        rows.push(vec!["log".into(), String::new(), String::new(), line.level.to_owned(), line.message]);
    }
    Ok(Output::Table { columns: vec!["Message", "Topic", "Tags", "Keys", column], rows })
}

/// `plugin test` of an allocation strategy: every client's share, and whether the
/// shares partition the queues (each queue read by exactly one client), which every
/// strategy must guarantee.
fn test_allocation(dir: &Path, project: &Project, group: &str, queues: u32, clients: usize) -> Result<Output> {
    let registry = load(dir, project)?;
    let plugin = registry.allocation(&project.name)?;
    let brokers = ["broker-a", "broker-b"];
    let table: Vec<QueueView> = (0..queues.max(1))
        .map(|q| QueueView {
            broker_name: brokers[(q % 2) as usize],
            queue_id: q / 2,
            perm: PERM_READ | PERM_WRITE,
            zone: "",
        })
        .collect();
    let ids: Vec<String> = (0..clients.max(1)).map(|i| format!("127.0.0.{}@client-{i}", i + 1)).collect();
    let views: Vec<plugin_api::ClientView> =
        ids.iter().map(|id| plugin_api::ClientView { client_id: id, zone: "" }).collect();
    let mut owner: Vec<Vec<usize>> = vec![Vec::new(); table.len()];
    let mut rows = Vec::new();
    for (c, id) in ids.iter().enumerate() {
        let input = plugin_api::AllocateInput { group, current_client: id, queues: &table, clients: &views };
        let mut out = Vec::new();
        let shown = match plugin_api::AllocationStrategy::allocate(&plugin, &input, &mut out) {
            Ok(()) => {
                let mut names = Vec::new();
                for &q in &out {
                    let Some(v) = table.get(q as usize) else {
                        bail!("{id} was given queue index {q} of {}", table.len())
                    };
                    owner[q as usize].push(c);
                    names.push(format!("{}:{}", v.broker_name, v.queue_id));
                }
                names.join(" ")
            }
            Err(e) => format!("error: {e} (the failure policy decides)"),
        };
        rows.push(vec![id.clone(), shown]);
    }
    let problems: Vec<String> = owner
        .iter()
        .enumerate()
        .filter(|(_, o)| o.len() != 1)
        .map(|(q, o)| format!("{}:{} read by {} clients", table[q].broker_name, table[q].queue_id, o.len()))
        .collect();
    let verdict =
        if problems.is_empty() { "every queue read by exactly one client".to_owned() } else { problems.join("; ") };
    rows.push(vec!["check".to_owned(), verdict]);
    for line in plugin_host::logs::since(&project.name, 0) {
        rows.push(vec![format!("log {}", line.level), line.message]);
    }
    Ok(Output::Table { columns: vec!["Client", "Queues"], rows })
}

/// What `plugin deploy` takes from a project directory: name, kind, artifact, config.
///
/// # Errors
/// No project file.
pub fn deploy_source(dir: &Path) -> Result<(Project, PathBuf)> {
    let project = Project::open(dir)?;
    let path = project.artifact_path(dir);
    Ok((project, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(out: Output) -> Vec<Vec<String>> {
        match out {
            Output::Table { rows, .. } => rows,
            other => panic!("not a table: {}", other.render(false)),
        }
    }

    /// Every Lua template, scaffolded, checked and run through the plugin host.
    #[test]
    fn each_lua_template_builds_and_runs_on_its_sample_input() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, name) in [
            (PluginKind::Filter, "lf"),
            (PluginKind::QueueSelector, "lq"),
            (PluginKind::TxnCheck, "lt"),
            (PluginKind::Allocation, "la"),
        ] {
            scaffold(kind, name, Lang::Lua, dir.path(), None).unwrap();
            let project = dir.path().join(name);
            let built = build(&project).unwrap().render(false);
            assert!(built.contains(&format!("{name} 0.1.0 ({kind}")), "{built}");
            let out = rows(test(&project, &project.join("messages.json"), "G", 4, 3).unwrap());
            let outcomes: Vec<&str> = out
                .iter()
                .filter(|r| r[0] != "log" && !r[0].starts_with("log "))
                .map(|r| r.last().unwrap().as_str())
                .collect();
            match kind {
                PluginKind::Filter => assert_eq!(outcomes, ["deliver", "reject", "deliver"]),
                PluginKind::QueueSelector => {
                    assert_eq!(outcomes.len(), 3);
                    assert_eq!(outcomes[0], outcomes[2], "one ORDER_ID, one queue: {out:?}");
                }
                PluginKind::TxnCheck => assert_eq!(outcomes, ["Commit", "Rollback", "AskProducer"]),
                _ => assert_eq!(outcomes.last(), Some(&"every queue read by exactly one client"), "{out:?}"),
            }
        }
        assert!(scaffold(PluginKind::Filter, "lf", Lang::Lua, dir.path(), None).is_err(), "the directory exists");
        assert!(scaffold(PluginKind::Filter, "Bad Name", Lang::Lua, dir.path(), None).is_err());
    }
}
