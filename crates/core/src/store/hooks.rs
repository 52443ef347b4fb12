//! Hook scripts and where they are attached.

use super::port::{Database, Statement, row, sql};
use super::{Store, StoreResult, nth, split_page};
use crate::hooks::{HookScope, HookScript, HookScriptConfig, HookType, PLUGIN_KEY};
use crate::time::Timestamp;

/// The columns a script is read with, from `hook_scripts` as `table` (`s`, or itself in `RETURNING`).
fn script_columns(table: &str) -> String {
    ["id", "name", "description", "version", "content_hash", "size", "created_at", "updated_at"]
        .iter()
        .map(|c| format!("{table}.{c} AS {c}"))
        .chain([format!("{table}.type AS kind")])
        .collect::<Vec<_>>()
        .join(", ")
}

row! {
    pub(super) struct ScriptRow {
        id: i64,
        name: String,
        description: Option<String>,
        kind: String,
        version: i64,
        content_hash: String,
        size: i64,
        created_at: i64,
        updated_at: i64,
    }
}

row! {
    pub(super) struct ConfigRow {
        scope_type: String,
        scope_id: i64,
        trigger_ids: String,
    }
}

impl From<ScriptRow> for HookScript {
    fn from(r: ScriptRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            kind: HookType::parse(&r.kind).unwrap_or(HookType::Post),
            version: r.version,
            plugin_key: PLUGIN_KEY.to_owned(),
            created_date: Timestamp(r.created_at).to_iso8601(),
            updated_date: Timestamp(r.updated_at).to_iso8601(),
            content_hash: r.content_hash,
            size: r.size,
        }
    }
}

/// Reads attached scripts (rows of [`SCRIPT_COLUMNS`] and the config's columns).
pub(super) fn read_configs(outcome: super::port::Outcome) -> StoreResult<Vec<HookScriptConfig>> {
    Ok(outcome
        .read::<(ScriptRow, ConfigRow)>()?
        .into_iter()
        .map(|(script, config)| HookScriptConfig {
            script: script.into(),
            scope: HookScope { kind: config.scope_type, resource_id: config.scope_id },
            trigger_ids: serde_json::from_str(&config.trigger_ids).unwrap_or_default(),
        })
        .collect())
}

/// The scripts attached to the repository `repository` (SQL, whose `?1` is bound to `param`) or
/// to its project.
pub(super) fn attached_to(repository: &str, param: impl Into<super::port::Value>) -> Statement {
    sql!(
        format!(
            "SELECT {}, c.scope_type AS scope_type, c.scope_id AS scope_id, c.trigger_ids AS trigger_ids \
             FROM hook_script_configs c JOIN hook_scripts s ON s.id = c.script_id \
             WHERE (c.scope_type = 'REPOSITORY' AND c.scope_id = {repository}) \
                OR (c.scope_type = 'PROJECT' AND c.scope_id = (SELECT project_id FROM repositories WHERE id = {repository}))",
            script_columns("s")
        ),
        param.into()
    )
}

impl<D: Database> Store<D> {
    /// Registers a script whose content is stored under its hash; `None` if the name is taken.
    pub async fn insert_hook_script(
        &self,
        name: &str,
        description: Option<&str>,
        kind: HookType,
        content_hash: &str,
        size: i64,
        now: Timestamp,
    ) -> StoreResult<HookScript> {
        let out = self
            .one(sql!(
                format!(
                    "INSERT INTO hook_scripts (name, description, type, content_hash, size, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING {}",
                    script_columns("hook_scripts")
                ),
                name,
                description,
                kind.as_str(),
                content_hash,
                size,
                now.millis()
            ))
            .await?;
        out.first::<ScriptRow>()?.map(Into::into).ok_or_else(|| super::StoreError::Backend("no script row".into()))
    }

    /// A script by id.
    pub async fn hook_script(&self, id: i64) -> StoreResult<Option<HookScript>> {
        Ok(self
            .row::<ScriptRow>(sql!(format!("SELECT {} FROM hook_scripts s WHERE s.id = ?1", script_columns("s")), id))
            .await?
            .map(Into::into))
    }

    /// Saves a script's fields; a new content hash adds one to its version.
    pub async fn update_hook_script(&self, script: &HookScript, now: Timestamp) -> StoreResult<Option<HookScript>> {
        let out = self
            .one(sql!(
                format!(
                    "UPDATE hook_scripts SET name = ?2, description = ?3, type = ?4, \
                     version = version + (content_hash != ?5), content_hash = ?5, size = ?6, updated_at = ?7 \
                     WHERE id = ?1 RETURNING {}",
                    script_columns("hook_scripts")
                ),
                script.id,
                script.name.as_str(),
                script.description.as_deref(),
                script.kind.as_str(),
                script.content_hash.as_str(),
                script.size,
                now.millis()
            ))
            .await?;
        Ok(out.first::<ScriptRow>()?.map(Into::into))
    }

    /// Deletes a script (and where it was attached); false if there was none.
    pub async fn delete_hook_script(&self, id: i64) -> StoreResult<bool> {
        Ok(self.one(sql!("DELETE FROM hook_scripts WHERE id = ?1", id)).await?.changes > 0)
    }

    /// Attaches a script to a project or repository (again: new trigger ids), and answers the
    /// configuration; `None` if the script does not exist.
    pub async fn attach_hook_script(
        &self,
        script_id: i64,
        scope: &HookScope,
        trigger_ids: &[String],
    ) -> StoreResult<Option<HookScriptConfig>> {
        let triggers = serde_json::to_string(trigger_ids).unwrap_or_else(|_| "[]".into());
        let mut out = self
            .batch(vec![
                sql!(
                    "INSERT INTO hook_script_configs (script_id, scope_type, scope_id, trigger_ids) \
                     SELECT id, ?2, ?3, ?4 FROM hook_scripts WHERE id = ?1 \
                     ON CONFLICT (scope_type, scope_id, script_id) DO UPDATE SET trigger_ids = excluded.trigger_ids",
                    script_id,
                    scope.kind.as_str(),
                    scope.resource_id,
                    triggers
                ),
                self::configs_statement(&scope.kind, scope.resource_id, Some(script_id), 0, 1),
            ])
            .await?;
        Ok(read_configs(nth(&mut out, 1)?)?.pop())
    }

    /// Detaches a script; false if it was not attached there.
    pub async fn detach_hook_script(&self, script_id: i64, scope: &HookScope) -> StoreResult<bool> {
        let out = self
            .one(sql!(
                "DELETE FROM hook_script_configs WHERE script_id = ?1 AND scope_type = ?2 AND scope_id = ?3",
                script_id,
                scope.kind.as_str(),
                scope.resource_id
            ))
            .await?;
        Ok(out.changes > 0)
    }

    /// A page of the scripts attached to a project or repository, by name.
    pub async fn hook_script_configs(
        &self,
        scope_type: &str,
        scope_id: i64,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<HookScriptConfig>, bool)> {
        let out = self.one(configs_statement(scope_type, scope_id, None, offset, limit)).await?;
        Ok(split_page(read_configs(out)?, limit))
    }
}

fn configs_statement(scope_type: &str, scope_id: i64, script: Option<i64>, offset: u64, limit: u64) -> Statement {
    sql!(
        format!(
            "SELECT {}, c.scope_type AS scope_type, c.scope_id AS scope_id, c.trigger_ids AS trigger_ids \
             FROM hook_script_configs c JOIN hook_scripts s ON s.id = c.script_id \
             WHERE c.scope_type = ?1 AND c.scope_id = ?2 AND (?3 IS NULL OR c.script_id = ?3) \
             ORDER BY s.name LIMIT ?4 OFFSET ?5",
            script_columns("s")
        ),
        scope_type,
        scope_id,
        script,
        super::identity::page_limit(limit),
        super::identity::page_offset(offset)
    )
}
