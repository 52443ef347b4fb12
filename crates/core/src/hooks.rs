//! Hook scripts (seed 002): programs a SYS_ADMIN uploads and project or repository
//! administrators attach with trigger ids, which farm nodes run around the ref updates they make.
//!
//! A **pre** hook runs before a push mirror's push or a fork sync's update, with git's
//! `<old> <new> <ref>` lines on stdin; a non-zero exit refuses refs (all of them, or only those
//! it names on stdout, one per line) and the mirror's status says why. A **post** hook runs after
//! a push, fork sync or farm pull, with the lines that moved. What applies to a job, what goes on
//! stdin and what a refusal means are decided here; the node only runs the program.

use serde::{Deserialize, Serialize};

use crate::queue::JobKind;

/// Why a hook script or its configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The upload is not `multipart/form-data`.
    #[error("Send the hook script as multipart/form-data (fields content, name, description, type).")]
    NotMultipart,
    /// No `content` part on creation.
    #[error("The content part (the script) is required.")]
    NoContent,
    /// The script is empty or too large.
    #[error("A hook script is 1 byte to {} KB.", MAX_SCRIPT_BYTES / 1024)]
    Size,
    /// A name that is missing, too long or has control characters.
    #[error("name is required: up to 255 characters.")]
    Name,
    /// A description that is too long or not text.
    #[error("description must be text of at most 1024 characters.")]
    Description,
    /// A type other than PRE or POST.
    #[error("type must be PRE or POST.")]
    Type,
    /// A trigger id this server does not know.
    #[error("{0:?} is not a trigger id: use repo-push, mirror-push, fork-sync or farm-pull.")]
    Trigger(String),
}

impl HookError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::NotMultipart | Self::NoContent | Self::Size => "content",
            Self::Name => "name",
            Self::Description => "description",
            Self::Type => "type",
            Self::Trigger(_) => "triggerIds",
        }
    }
}

/// The largest script accepted.
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;

/// The `pluginKey` of our scripts (Bitbucket names the plugin that registered a script).
pub const PLUGIN_KEY: &str = "com.mirrorfarm.hook-scripts";

/// When a script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum HookType {
    /// Before refs are updated; may refuse them.
    Pre,
    /// After refs were updated; told what moved.
    Post,
}

crate::wire_names!(HookType { Pre = "PRE", Post = "POST" });

/// The trigger ids a script is attached with.
pub mod trigger {
    /// A push mirror's push to its target.
    pub const MIRROR_PUSH: &str = "mirror-push";
    /// A fork sync's update of the fork.
    pub const FORK_SYNC: &str = "fork-sync";
    /// A pull of the farm's copy from upstream (post hooks only: nothing is refused upstream).
    pub const FARM_PULL: &str = "farm-pull";
    /// Bitbucket's "the repository changed": every one of the above.
    pub const REPO_PUSH: &str = "repo-push";
    /// Every trigger id, in the order errors list them.
    pub const ALL: [&str; 4] = [REPO_PUSH, MIRROR_PUSH, FORK_SYNC, FARM_PULL];
}

/// Checks trigger ids (none given: `repo-push`), each once, in the order sent.
pub fn trigger_ids(given: Option<Vec<String>>) -> Result<Vec<String>, HookError> {
    let given = given.unwrap_or_else(|| vec![trigger::REPO_PUSH.to_owned()]);
    let mut out: Vec<String> = Vec::new();
    for id in given {
        let id = id.trim().to_ascii_lowercase();
        if !trigger::ALL.contains(&id.as_str()) {
            return Err(HookError::Trigger(id));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.is_empty() {
        out.push(trigger::REPO_PUSH.to_owned());
    }
    Ok(out)
}

/// The fields of a hook-script upload (`POST` or `PUT …/hook-scripts[/{id}]`), checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookScriptUpload {
    /// The script, if sent.
    pub content: Option<Vec<u8>>,
    /// Its name, if sent.
    pub name: Option<String>,
    /// Its description, if sent (empty: none).
    pub description: Option<String>,
    /// PRE or POST, if sent.
    pub kind: Option<HookType>,
}

impl HookScriptUpload {
    /// Reads the multipart fields `content`, `name`, `description` and `type`.
    pub fn from_multipart(content_type: Option<&str>, body: &[u8]) -> Result<Self, HookError> {
        let boundary = crate::admin::avatar::multipart_boundary(content_type).ok_or(HookError::NotMultipart)?;
        let part = |name: &str| crate::admin::avatar::multipart_part(body, &boundary, name);
        let text = |name: &str| part(name).map(|b| String::from_utf8_lossy(b).trim().to_owned());
        let content = match part("content") {
            Some(bytes) if bytes.is_empty() || bytes.len() > MAX_SCRIPT_BYTES => return Err(HookError::Size),
            Some(bytes) => Some(bytes.to_vec()),
            None => None,
        };
        let name = match text("name") {
            Some(n) if n.is_empty() || n.len() > 255 || n.chars().any(char::is_control) => return Err(HookError::Name),
            other => other,
        };
        let description = match text("description") {
            Some(d) if d.len() > 1024 => return Err(HookError::Description),
            other => other,
        };
        let kind = match text("type") {
            Some(t) => Some(HookType::parse(&t).ok_or(HookError::Type)?),
            None => None,
        };
        Ok(Self { content, name, description, kind })
    }

    /// Whether it changes nothing (a PUT with no field: Bitbucket's 422).
    pub fn is_empty(&self) -> bool {
        self.content.is_none() && self.name.is_none() && self.description.is_none() && self.kind.is_none()
    }
}

/// A hook script as stored and sent (`RestHookScript`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HookScript {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// PRE or POST.
    #[serde(rename = "type")]
    pub kind: HookType,
    /// Starts at 1; each new content adds one.
    pub version: i64,
    /// Always [`PLUGIN_KEY`].
    pub plugin_key: String,
    /// When it was uploaded (ISO-8601).
    pub created_date: String,
    /// When it last changed (ISO-8601).
    pub updated_date: String,
    /// SHA-256 of the content (nodes check what they fetch against it).
    pub content_hash: String,
    /// The content's size in bytes.
    pub size: i64,
}

/// Where a script is attached (`RestHookScriptConfig.scope`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HookScope {
    /// PROJECT or REPOSITORY.
    #[serde(rename = "type")]
    pub kind: String,
    /// The project's or repository's id.
    pub resource_id: i64,
}

/// A script attached to a project or repository (`RestHookScriptConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HookScriptConfig {
    /// The script.
    pub script: HookScript,
    /// Where.
    pub scope: HookScope,
    /// What runs it.
    pub trigger_ids: Vec<String>,
}

/// A script a node is to run for a leased job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedHook {
    /// Script id (its content is fetched by id and checked against `contentHash`).
    pub id: i64,
    /// Its name, for messages.
    pub name: String,
    /// PRE or POST.
    #[serde(rename = "type")]
    pub kind: HookType,
    /// SHA-256 of the content.
    pub content_hash: String,
    /// The trigger it runs for (`MIRRORFARM_HOOK_TRIGGER`).
    pub trigger: String,
}

/// The trigger a job's ref updates are.
pub fn trigger_of(kind: JobKind) -> Option<&'static str> {
    match kind {
        JobKind::PushMirror => Some(trigger::MIRROR_PUSH),
        JobKind::ForkSync => Some(trigger::FORK_SYNC),
        JobKind::PullMirror => Some(trigger::FARM_PULL),
        JobKind::Discover | JobKind::UpstreamPoll | JobKind::SendMail => None,
        JobKind::MigrationExport | JobKind::MigrationImport | JobKind::MeshMove | JobKind::SupportZip => None,
    }
}

/// The scripts that run for a job of `kind`, from those attached to its repository or project:
/// attached with its trigger or `repo-push`; pre hooks only where refs can be refused (pushes and
/// fork syncs); each script once, by name.
pub fn applicable(kind: JobKind, attached: &[HookScriptConfig]) -> Vec<LeasedHook> {
    let Some(trigger) = trigger_of(kind) else { return Vec::new() };
    let mut out: Vec<LeasedHook> = attached
        .iter()
        .filter(|c| c.trigger_ids.iter().any(|t| t == trigger || t == trigger::REPO_PUSH))
        .filter(|c| c.script.kind == HookType::Post || kind != JobKind::PullMirror)
        .map(|c| LeasedHook {
            id: c.script.id,
            name: c.script.name.clone(),
            kind: c.script.kind,
            content_hash: c.script.content_hash.clone(),
            trigger: trigger.to_owned(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    out.dedup_by_key(|h| h.id);
    out
}

/// git's object id of "no object".
pub const ZERO_ID: &str = "0000000000000000000000000000000000000000";

/// The stdin of a hook: one `<old> <new> <ref>` line per update, as git's pre-receive hooks get
/// them (a creation's old and a deletion's new are [`ZERO_ID`]).
pub fn stdin_lines<'a>(updates: impl IntoIterator<Item = (Option<String>, Option<String>, &'a str)>) -> String {
    updates
        .into_iter()
        .map(|(old, new, name)| {
            format!("{} {} {name}\n", old.as_deref().unwrap_or(ZERO_ID), new.as_deref().unwrap_or(ZERO_ID))
        })
        .collect()
}

/// How a pre hook's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookExit {
    /// Exit status 0.
    Accepted,
    /// A non-zero exit (or killed by a signal).
    Refused,
    /// Killed at its timeout.
    TimedOut,
}

/// The refs a pre hook refuses: none when it accepted; when it refused, those of `offered` it
/// names on stdout (one per line), or all of them if it names none; all of them when it timed out.
pub fn refused_refs(exit: HookExit, stdout: &str, offered: &[&str]) -> Vec<String> {
    match exit {
        HookExit::Accepted => Vec::new(),
        HookExit::TimedOut => offered.iter().map(|r| (*r).to_owned()).collect(),
        HookExit::Refused => {
            let named: Vec<String> =
                offered.iter().filter(|r| stdout.lines().any(|l| l.trim() == **r)).map(|r| (*r).to_owned()).collect();
            if named.is_empty() { offered.iter().map(|r| (*r).to_owned()).collect() } else { named }
        }
    }
}

/// The mirror's error when a hook refused refs (or did not finish): the script, the refs (the
/// first ten) and what it said.
pub fn refusal_message(script: &str, exit: HookExit, refused: &[String], said: &str, timeout_secs: u64) -> String {
    let mut names: Vec<&str> = refused.iter().map(String::as_str).take(10).collect();
    if refused.len() > 10 {
        names.push("…");
    }
    let said: String = said.trim().chars().take(500).collect();
    let why = match exit {
        HookExit::TimedOut => format!("did not finish within {timeout_secs} s and was stopped"),
        _ => "refused".to_owned(),
    };
    let mut message = format!("Hook script {script} {why}: {}", names.join(", "));
    if !said.is_empty() {
        message.push_str(": ");
        message.push_str(&said);
    }
    message
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn config(id: i64, name: &str, kind: HookType, triggers: &[&str]) -> HookScriptConfig {
        HookScriptConfig {
            script: HookScript {
                id,
                name: name.into(),
                description: None,
                kind,
                version: 1,
                plugin_key: PLUGIN_KEY.into(),
                created_date: String::new(),
                updated_date: String::new(),
                content_hash: format!("{id:064}"),
                size: 1,
            },
            scope: HookScope { kind: "REPOSITORY".into(), resource_id: 1 },
            trigger_ids: triggers.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn what_runs_for_which_job() {
        let attached = [
            config(1, "b-guard", HookType::Pre, &["mirror-push"]),
            config(2, "a-notify", HookType::Post, &["repo-push"]),
            config(3, "fork-guard", HookType::Pre, &["fork-sync"]),
            config(2, "a-notify", HookType::Post, &["repo-push"]),
            config(4, "pull-guard", HookType::Pre, &["repo-push"]),
        ];
        let names = |kind| applicable(kind, &attached).into_iter().map(|h| h.name).collect::<Vec<_>>();
        assert_eq!(names(JobKind::PushMirror), ["a-notify", "b-guard", "pull-guard"]);
        assert_eq!(names(JobKind::ForkSync), ["a-notify", "fork-guard", "pull-guard"]);
        assert_eq!(names(JobKind::PullMirror), ["a-notify"], "no pre hooks on pulls");
        assert!(names(JobKind::SendMail).is_empty());
        assert_eq!(applicable(JobKind::ForkSync, &attached)[0].trigger, "fork-sync");
    }

    #[test]
    fn trigger_ids_are_checked() {
        assert_eq!(trigger_ids(None), Ok(vec!["repo-push".to_owned()]));
        assert_eq!(
            trigger_ids(Some(vec!["Mirror-Push".into(), "mirror-push".into(), "farm-pull".into()])),
            Ok(vec!["mirror-push".to_owned(), "farm-pull".to_owned()])
        );
        assert_eq!(trigger_ids(Some(vec!["pr-merge".into()])).map_err(|e| e.field()), Err("triggerIds"));
    }

    #[test]
    fn stdin_and_refusals() {
        let lines = stdin_lines([
            (None, Some("a".repeat(40)), "refs/heads/new"),
            (Some("b".repeat(40)), None, "refs/heads/gone"),
        ]);
        assert_eq!(
            lines,
            format!("{ZERO_ID} {} refs/heads/new\n{} {ZERO_ID} refs/heads/gone\n", "a".repeat(40), "b".repeat(40))
        );
        let offered = ["refs/heads/main", "refs/heads/wip/x", "refs/heads/wip/y"];
        assert!(refused_refs(HookExit::Accepted, "refs/heads/main", &offered).is_empty());
        assert_eq!(
            refused_refs(HookExit::Refused, "no wip please\nrefs/heads/wip/x\n refs/heads/wip/y \n", &offered),
            ["refs/heads/wip/x", "refs/heads/wip/y"]
        );
        assert_eq!(refused_refs(HookExit::Refused, "nope", &offered).len(), 3, "names none: all");
        assert_eq!(refused_refs(HookExit::TimedOut, "refs/heads/main", &offered).len(), 3);
        let m = refusal_message(
            "no-wip",
            HookExit::Refused,
            &["refs/heads/wip/x".into()],
            "  WIP branches stay home \n",
            60,
        );
        assert_eq!(m, "Hook script no-wip refused: refs/heads/wip/x: WIP branches stay home");
        let t = refusal_message("slow", HookExit::TimedOut, &["refs/heads/main".into()], "", 2);
        assert_eq!(t, "Hook script slow did not finish within 2 s and was stopped: refs/heads/main");
    }

    #[test]
    fn uploads_are_read_from_multipart() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"content\"; filename=\"h.sh\"\r\n\r\n#!/bin/sh\nexit 0\n\r\n--B\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nguard\r\n--B\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\npre\r\n--B--\r\n";
        let up = HookScriptUpload::from_multipart(Some("multipart/form-data; boundary=B"), body).expect("upload");
        assert_eq!(up.content.as_deref(), Some(&b"#!/bin/sh\nexit 0\n"[..]));
        assert_eq!((up.name.as_deref(), up.kind), (Some("guard"), Some(HookType::Pre)));
        assert_eq!(HookScriptUpload::from_multipart(Some("application/json"), b"{}"), Err(HookError::NotMultipart));
        let bad = b"--B\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nMIDDLE\r\n--B--\r\n";
        assert_eq!(
            HookScriptUpload::from_multipart(Some("multipart/form-data; boundary=B"), bad),
            Err(HookError::Type)
        );
    }
}
