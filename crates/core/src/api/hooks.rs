//! Hook scripts (seed 002): upload (SYS_ADMIN), attach to projects and repositories (their
//! admins), and the content nodes fetch.

use serde_json::Value;

use super::identity::field;
use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::hooks::{HookError, HookScope, HookScript, HookScriptUpload};
use crate::paging::BitbucketPage;
use crate::queue::Signals;
use crate::store::port::Database;
use crate::store::{Blobs, Crypto};

fn hook_field(e: &HookError) -> ApiError {
    field(e.field(), e)
}

fn no_script(id: &str) -> ApiError {
    ApiError::not_found("HookScript", format!("Hook script {id} does not exist."))
}

fn name_taken(name: &str) -> ApiError {
    ApiError::Conflict(format!("A hook script named {name} already exists."))
}

/// The R2 key of a script's content: content-addressed, so an upload is stored before its row
/// exists and a failed insert leaves nothing wrong behind.
fn content_key(hash: &str) -> String {
    format!("hook-scripts/{hash}")
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The script `{scriptId}` names, or 404.
    async fn script_at(&self, call: &Call<'_>) -> Result<HookScript> {
        let raw = call.params.raw("scriptId");
        let id: i64 = raw.parse().map_err(|_| no_script(raw))?;
        self.store.hook_script(id).await?.ok_or_else(|| no_script(raw))
    }

    /// Stores content in blob storage under its hash; answers the hash.
    async fn store_content(&self, content: Vec<u8>) -> Result<String> {
        let hash = self.crypto.sha256_hex(&content).await?;
        self.blobs
            .put(&content_key(&hash), content, "application/octet-stream")
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(hash)
    }

    /// `POST /rest/api/latest/hook-scripts` (multipart `content`, `name`, `description`, `type`).
    pub(super) async fn create_hook_script(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let up = HookScriptUpload::from_multipart(call.req.content_type.as_deref(), &call.req.body)
            .map_err(|e| hook_field(&e))?;
        let content = up.content.ok_or_else(|| hook_field(&HookError::NoContent))?;
        let name = up.name.ok_or_else(|| hook_field(&HookError::Name))?;
        let kind = up.kind.ok_or_else(|| hook_field(&HookError::Type))?;
        let size = i64::try_from(content.len()).unwrap_or(i64::MAX);
        let hash = self.store_content(content).await?;
        let description = up.description.filter(|d| !d.is_empty());
        let script =
            self.store.insert_hook_script(&name, description.as_deref(), kind, &hash, size, self.now).await.map_err(
                |e| match e {
                    crate::store::StoreError::Conflict(_) => name_taken(&name),
                    other => other.into(),
                },
            )?;
        Ok(ApiResponse::json(200, &script))
    }

    /// `GET /rest/api/latest/hook-scripts/{scriptId}`.
    pub(super) async fn get_hook_script(&self, call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &self.script_at(call).await?))
    }

    /// `PUT /rest/api/latest/hook-scripts/{scriptId}` (multipart): 422 when nothing is sent,
    /// 409 when the name is taken; new content adds one to the version.
    pub(super) async fn update_hook_script(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let mut script = self.script_at(call).await?;
        let up = HookScriptUpload::from_multipart(call.req.content_type.as_deref(), &call.req.body)
            .map_err(|e| hook_field(&e))?;
        if up.is_empty() {
            return Err(ApiError::Unprocessable("Nothing to change: send content, name, description or type.".into()));
        }
        if let Some(content) = up.content {
            script.size = i64::try_from(content.len()).unwrap_or(i64::MAX);
            script.content_hash = self.store_content(content).await?;
        }
        if let Some(name) = up.name {
            script.name = name;
        }
        if let Some(description) = up.description {
            script.description = Some(description).filter(|d| !d.is_empty());
        }
        if let Some(kind) = up.kind {
            script.kind = kind;
        }
        let saved = self.store.update_hook_script(&script, self.now).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => name_taken(&script.name),
            other => other.into(),
        })?;
        Ok(ApiResponse::json(200, &saved.ok_or_else(|| no_script(&script.id.to_string()))?))
    }

    /// `DELETE /rest/api/latest/hook-scripts/{scriptId}`: 204 (and detached everywhere). The
    /// content stays in blob storage only while another script has the same.
    pub(super) async fn delete_hook_script(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let script = self.script_at(call).await?;
        if !self.store.delete_hook_script(script.id).await? {
            return Err(no_script(&script.id.to_string()));
        }
        Ok(ApiResponse::empty(204))
    }

    /// `GET …/hook-scripts/{scriptId}/content` (SYS_ADMIN), and the same for farm nodes.
    pub(super) async fn hook_script_content(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let script = self.script_at(call).await?;
        let bytes = self
            .blobs
            .get(&content_key(&script.content_hash))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| ApiError::Internal(format!("hook script {} has no stored content", script.id)))?;
        Ok(ApiResponse::bytes(200, "application/octet-stream", bytes))
    }

    /// The scope a `/projects/{key}[/repos/{slug}]/hook-scripts` path names, checked for the
    /// route's level (project or repository admins).
    async fn hook_scope(&self, call: &Call<'_>) -> Result<HookScope> {
        if call.params.raw("repositorySlug").is_empty() {
            let project = self.project_for(call).await?;
            Ok(HookScope { kind: "PROJECT".into(), resource_id: project.id })
        } else {
            let repo = self.repository_for(call).await?;
            Ok(HookScope { kind: "REPOSITORY".into(), resource_id: repo.id })
        }
    }

    /// `GET /projects/{key}[/repos/{slug}]/hook-scripts`: a page of the scripts attached there.
    pub(super) async fn list_hook_configs(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let scope = self.hook_scope(call).await?;
        let page = BitbucketPage::from_query(&call.query);
        let (configs, more) =
            self.store.hook_script_configs(&scope.kind, scope.resource_id, page.start, page.limit).await?;
        Ok(ApiResponse::json(200, &page.open(configs, more)))
    }

    /// `PUT /projects/{key}[/repos/{slug}]/hook-scripts/{scriptId}` `{triggerIds}`: attach (again).
    pub(super) async fn attach_hook_script(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let scope = self.hook_scope(call).await?;
        let map = call.json_object()?;
        let given = match map.get("triggerIds") {
            None | Some(Value::Null) => None,
            Some(Value::Array(ids)) => Some(
                ids.iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or_else(|| field("triggerIds", "triggerIds are strings."))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(_) => return Err(field("triggerIds", "triggerIds must be an array of trigger ids.")),
        };
        let triggers = crate::hooks::trigger_ids(given).map_err(|e| hook_field(&e))?;
        let raw = call.params.raw("scriptId");
        let id: i64 = raw.parse().map_err(|_| no_script(raw))?;
        let config = self.store.attach_hook_script(id, &scope, &triggers).await?.ok_or_else(|| no_script(raw))?;
        Ok(ApiResponse::json(200, &config))
    }

    /// `DELETE /projects/{key}[/repos/{slug}]/hook-scripts/{scriptId}`: 204; 404 if not attached.
    pub(super) async fn detach_hook_script(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let scope = self.hook_scope(call).await?;
        let raw = call.params.raw("scriptId");
        let id: i64 = raw.parse().map_err(|_| no_script(raw))?;
        if !self.store.detach_hook_script(id, &scope).await? {
            return Err(ApiError::not_found("HookScript", format!("Hook script {raw} is not attached here.")));
        }
        Ok(ApiResponse::empty(204))
    }
}
