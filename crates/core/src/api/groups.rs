//! Bitbucket's groups: `admin/groups` and their members, and project and repository
//! `permissions/groups`. What a group's grants mean is decided where every grant is: the store
//! reads them with the caller's own, in the same statement.

use serde_json::Value;

use super::identity::{field, no_user};
use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::identity::groups::{Group, GroupDto, GroupName, PermittedGroupDto, validate_group_name};
use crate::identity::{Level, Permission, User};
use crate::paging::BitbucketPage;
use crate::queue::Signals;
use crate::store::port::Database;
use crate::store::{Blobs, Crypto, GroupGrantOn};

/// No group of that name.
fn no_group(name: &str) -> ApiError {
    ApiError::not_found("Group", format!("Group {name} does not exist."))
}

/// A string field of a JSON body.
fn text_field(map: &serde_json::Map<String, Value>, name: &str) -> Result<String> {
    match map.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(field(name, format!("{name} is required."))),
    }
}

/// A list-of-strings field of a JSON body (at least one).
fn list_field(map: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<String>> {
    let list: Option<Vec<String>> = match map.get(name) {
        Some(Value::Array(items)) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    };
    list.filter(|l| !l.is_empty()).ok_or_else(|| field(name, format!("{name} must be a list of at least one name.")))
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The groups so named, all of which must exist: one round trip.
    async fn named_groups(&self, names: &[&str]) -> Result<Vec<Group>> {
        let groups = self.store.groups_by_names(names).await?;
        if let Some(missing) = names.iter().find(|n| !groups.iter().any(|g| g.name.eq_ignore_ascii_case(n))) {
            return Err(no_group(missing));
        }
        Ok(groups)
    }

    /// The users so named, all of which must exist: one round trip.
    async fn existing_users(&self, names: &[&str]) -> Result<Vec<User>> {
        let users = self.store.users_by_names(names).await?;
        let found = |n: &str| users.iter().any(|u| u.name.eq_ignore_ascii_case(n) || u.slug.eq_ignore_ascii_case(n));
        if let Some(missing) = names.iter().find(|n| !found(n)) {
            return Err(no_user(missing));
        }
        Ok(users)
    }

    /// `GET admin/groups?filter=`.
    pub(super) async fn list_groups(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let page = BitbucketPage::from_query(&call.query);
        let (groups, more) = self.store.list_groups(call.query.get("filter"), page.start, page.limit).await?;
        Ok(ApiResponse::json(200, &page.open(groups.iter().map(GroupDto::from).collect(), more)))
    }

    /// `POST admin/groups?name=`: 409 if the name is taken (case-insensitive).
    pub(super) async fn create_group(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let name = validate_group_name(call.query.get("name").unwrap_or_default()).map_err(|e| field("name", e))?;
        match self.store.insert_group(&name, self.now).await? {
            Some(group) => Ok(ApiResponse::json(200, &GroupDto::from(&group))),
            None => Err(ApiError::Conflict(format!("A group named {name} already exists."))),
        }
    }

    /// `DELETE admin/groups?name=`: the group, its memberships and its grants.
    pub(super) async fn delete_group(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let name = call.query.get("name").ok_or_else(|| field("name", "A group name is required."))?;
        let group = self.store.delete_group(name).await?.ok_or_else(|| no_group(name))?;
        Ok(ApiResponse::json(200, &GroupDto::from(&group)))
    }

    /// `POST admin/groups/add-users` `{group, users}`.
    pub(super) async fn add_users_to_group(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let body = call.json_object()?;
        let group = text_field(&body, "group")?;
        let users = list_field(&body, "users")?;
        self.add_memberships(&[group.as_str()], &users.iter().map(String::as_str).collect::<Vec<_>>()).await
    }

    /// `POST admin/users/add-groups` `{user, groups}`.
    pub(super) async fn add_groups_to_user(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let body = call.json_object()?;
        let user = text_field(&body, "user")?;
        let groups = list_field(&body, "groups")?;
        self.add_memberships(&groups.iter().map(String::as_str).collect::<Vec<_>>(), &[user.as_str()]).await
    }

    async fn add_memberships(&self, group_names: &[&str], user_names: &[&str]) -> Result<ApiResponse> {
        let groups = self.named_groups(group_names).await?;
        let users = self.existing_users(user_names).await?;
        let group_ids: Vec<i64> = groups.iter().map(|g| g.id).collect();
        let user_ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        self.store.add_members(&group_ids, &user_ids).await?;
        Ok(ApiResponse::empty(200))
    }

    /// `POST admin/groups/remove-user` `{context: group, itemName: user}`, or with `by_user`
    /// `POST admin/users/remove-group` `{context: user, itemName: group}`.
    pub(super) async fn remove_membership(&self, call: &Call<'_>, by_user: bool) -> Result<ApiResponse> {
        let body = call.json_object()?;
        let context = text_field(&body, "context")?;
        let item = text_field(&body, "itemName")?;
        let (group, user) = if by_user { (item, context) } else { (context, item) };
        let found = self.named_groups(&[group.as_str()]).await?;
        let users = self.existing_users(&[user.as_str()]).await?;
        if let (Some(g), Some(u)) = (found.first(), users.first()) {
            self.store.remove_member(g.id, u.id).await?;
        }
        Ok(ApiResponse::empty(200))
    }

    /// `GET admin/groups/more-members?context=` and `more-non-members`: users in (or outside) the group.
    pub(super) async fn group_member_users(&self, call: &Call<'_>, members: bool) -> Result<ApiResponse> {
        let who = call.principal()?;
        let group = call.query.get("context").ok_or_else(|| field("context", "A group name is required."))?;
        let page = BitbucketPage::from_query(&call.query);
        let (users, more) = self
            .store
            .group_members(group, members, call.query.get("filter"), page.start, page.limit)
            .await?
            .ok_or_else(|| no_group(group))?;
        Ok(ApiResponse::json(200, &page.open(users.iter().map(|u| Self::detailed(u, who)).collect(), more)))
    }

    /// What a group grant route is about: the project or repository named by the path, checked
    /// for the route's level.
    async fn group_grant_target(&self, call: &Call<'_>, repository: bool) -> Result<GroupGrantOn> {
        Ok(if repository {
            GroupGrantOn::Repository(self.repository_for(call).await?.id)
        } else {
            GroupGrantOn::Project(self.project_for(call).await?.id)
        })
    }

    /// `GET …/permissions/groups?filter=`: the groups granted something, with their permission.
    pub(super) async fn list_group_grants(&self, call: &Call<'_>, repository: bool) -> Result<ApiResponse> {
        let on = self.group_grant_target(call, repository).await?;
        let page = BitbucketPage::from_query(&call.query);
        let (grants, more) = self.store.group_grants(on, call.query.get("filter"), page.start, page.limit).await?;
        let values = grants
            .into_iter()
            .map(|(g, level)| PermittedGroupDto {
                group: GroupName { name: g.name },
                permission: if repository { Permission::Repo(level) } else { Permission::Project(level) },
            })
            .collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    /// `PUT …/permissions/groups?name=…&permission=` (grant) and `DELETE …?name=` (revoke).
    pub(super) async fn set_group_grant(&self, call: &Call<'_>, repository: bool, grant: bool) -> Result<ApiResponse> {
        let on = self.group_grant_target(call, repository).await?;
        let level: Option<Level> = if grant {
            let text = call.query.get("permission").ok_or_else(|| field("permission", "A permission is required."))?;
            match (text.parse::<Permission>().map_err(|e| field("permission", e))?, repository) {
                (Permission::Project(l), false) | (Permission::Repo(l), true) => Some(l),
                (other, _) => {
                    let kind = if repository { "repository" } else { "project" };
                    return Err(field("permission", format!("{other} is not a {kind} permission.")));
                }
            }
        } else {
            None
        };
        let names: Vec<&str> =
            call.query.pairs().iter().filter(|(k, _)| k == "name").map(|(_, v)| v.as_str()).collect();
        if names.is_empty() {
            return Err(field("name", "At least one group name is required."));
        }
        let ids: Vec<i64> = self.named_groups(&names).await?.iter().map(|g| g.id).collect();
        self.store.set_group_grants(on, &ids, level).await?;
        Ok(ApiResponse::empty(204))
    }
}
