//! The audit log's SQL, and how an event rides in the batch of the change it records.
//!
//! Before a write's handler runs, the service *arms* the store with the event's insert (outcome
//! `SUCCESS`). [`Store::batch`](super::Store) appends it to the first batch that writes, so the
//! event is committed with the change or not at all, at no extra round trip. If that batch fails,
//! the event is armed again (nothing of it was written), and the service records the failure on
//! its own. What happened to the armed event is read back by [`Store::disarm_audit`].
//!
//! A request that still waits for something after its write (a farm node's work) makes its
//! armed event provisional first ([`Store::audit_provisionally`]): it goes in with the change as
//! a FAILURE, and is made SUCCESS only once the request has succeeded, so a failure to rewrite it
//! never leaves a SUCCESS the request did not earn.

use super::port::{Database, Statement, Value, row, sql};
use super::{Store, StoreError, StoreResult, split_page};
use crate::audit::{Actor, Affected, Changed, EventQuery, object_key};
use crate::time::Timestamp;

/// Where the armed event of the request being answered is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum AuditSlot {
    /// Nothing is armed.
    #[default]
    Idle,
    /// Waiting for the first batch that writes; whether provisional.
    Armed(Statement, bool),
    /// Written in a batch that committed; the event's id, and whether provisional.
    Carried(Option<i64>, bool),
}

/// What became of an armed event (see [`Store::disarm_audit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditCarry {
    /// Nothing was armed.
    NotArmed,
    /// No batch that wrote carried it: nothing of it is written.
    Pending,
    /// It was committed with a change; its id.
    Carried(Option<i64>),
    /// It was committed with a change as a FAILURE, to be made SUCCESS if the request succeeds
    /// (see [`Store::audit_provisionally`]); its id.
    Provisional(Option<i64>),
}

/// One event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: Actor,
    /// The client's address.
    pub source: Option<String>,
    /// The category (see [`crate::audit::category`]).
    pub category: String,
    /// The action (the route's handler, or a failed sign-in).
    pub action: String,
    /// The HTTP method.
    pub method: String,
    /// The request path, without its query.
    pub path: String,
    /// The objects it touched.
    pub objects: Vec<Affected>,
    /// The fields it sent, secrets masked.
    pub changed: Vec<Changed>,
}

row! {
    /// One stored event (the columns of `audit_events`).
    pub(crate) struct AuditRow {
        pub(crate) id: i64,
        pub(crate) at: i64,
        pub(crate) author_id: Option<i64>,
        pub(crate) author_name: String,
        pub(crate) author_slug: Option<String>,
        pub(crate) author_type: String,
        pub(crate) source: Option<String>,
        pub(crate) category: String,
        pub(crate) action: String,
        pub(crate) method: String,
        pub(crate) path: String,
        pub(crate) status: Option<i64>,
        pub(crate) outcome: String,
        pub(crate) objects: String,
        pub(crate) changed: String,
    }
}

row! {
    struct IdRow {
        id: i64,
    }
}

fn json(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Whether a statement writes: anything but a `SELECT` (or a `WITH … SELECT`).
pub(crate) fn writes(sql: &str) -> bool {
    let head = sql.trim_start();
    let word = head.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    match word.as_str() {
        "SELECT" | "" => false,
        "WITH" => {
            let upper = head.to_ascii_uppercase();
            ["INSERT ", "UPDATE ", "DELETE ", "REPLACE "].iter().any(|w| upper.contains(w))
        }
        _ => true,
    }
}

/// Where the insert of [`insert`] binds the status and the outcome.
const STATUS_PARAM: usize = 10;
const OUTCOME_PARAM: usize = 11;

/// The insert of an event with its outcome and status (`None`: written with its change).
fn insert(record: &AuditRecord, outcome: &str, status: Option<u16>) -> StoreResult<Statement> {
    let (author_id, author_slug) = match &record.actor {
        Actor::User { id, slug, .. } => (Some(*id), Some(slug.as_str())),
        _ => (None, None),
    };
    let keys: String = record.objects.iter().map(|o| object_key(&o.kind, &o.id)).collect();
    Ok(Statement::new(
        "INSERT INTO audit_events (at, author_id, author_name, author_slug, author_type, source, category, action, \
         method, path, status, outcome, objects, object_keys, changed) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) RETURNING id",
        vec![
            record.at.millis().into(),
            author_id.into(),
            record.actor.name().into(),
            author_slug.into(),
            record.actor.kind().into(),
            record.source.clone().into(),
            record.category.clone().into(),
            record.action.clone().into(),
            record.method.clone().into(),
            record.path.clone().into(),
            status.map(i64::from).into(),
            outcome.into(),
            json(&record.objects)?.into(),
            keys.into(),
            json(&record.changed)?.into(),
        ],
    ))
}

/// `?n IS NULL OR <column> IN (SELECT value FROM json_each(?n))`, bound to a JSON list or NULL.
fn any_of<T: serde::Serialize>(values: &[T]) -> StoreResult<Value> {
    if values.is_empty() { Ok(Value::Null) } else { Ok(json(&values)?.into()) }
}

impl<D: Database> Store<D> {
    /// Arms the store with `record`'s event (outcome `SUCCESS`): the next batch that writes
    /// carries it.
    pub fn arm_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        *self.audit.borrow_mut() = AuditSlot::Armed(insert(record, "SUCCESS", None)?, false);
        Ok(())
    }

    /// Makes the armed event, if no batch has carried it yet, provisional: it goes in with the
    /// change as a FAILURE with `status` (what the request answers if what it waits for after
    /// its write does not come), and [`Store::disarm_audit`] says [`AuditCarry::Provisional`].
    pub fn audit_provisionally(&self, status: u16) {
        if let AuditSlot::Armed(event, provisional) = &mut *self.audit.borrow_mut() {
            if let Some(p) = event.params.get_mut(STATUS_PARAM) {
                *p = i64::from(status).into();
            }
            if let Some(p) = event.params.get_mut(OUTCOME_PARAM) {
                *p = "FAILURE".into();
                *provisional = true;
            }
        }
    }

    /// Disarms the store, telling what became of the armed event.
    pub fn disarm_audit(&self) -> AuditCarry {
        match std::mem::take(&mut *self.audit.borrow_mut()) {
            AuditSlot::Idle => AuditCarry::NotArmed,
            AuditSlot::Armed(..) => AuditCarry::Pending,
            AuditSlot::Carried(id, false) => AuditCarry::Carried(id),
            AuditSlot::Carried(id, true) => AuditCarry::Provisional(id),
        }
    }

    /// The armed event, if `statements` write (taking it: a concurrent batch does not carry it too).
    pub(super) fn take_armed(&self, statements: &[Statement]) -> Option<Statement> {
        let mut slot = self.audit.borrow_mut();
        let provisional = match *slot {
            AuditSlot::Armed(_, provisional) if statements.iter().any(|s| writes(&s.sql)) => provisional,
            _ => return None,
        };
        match std::mem::replace(&mut *slot, AuditSlot::Carried(None, provisional)) {
            AuditSlot::Armed(statement, _) => Some(statement),
            _ => None,
        }
    }

    /// After the batch that carried the event: committed (with its outcome), or failed (armed again).
    pub(super) fn settle_armed(&self, event: Statement, committed: Option<super::port::Outcome>) {
        let mut slot = self.audit.borrow_mut();
        let provisional = matches!(*slot, AuditSlot::Carried(_, true));
        *slot = match committed {
            Some(outcome) => AuditSlot::Carried(outcome.first::<IdRow>().ok().flatten().map(|r| r.id), provisional),
            None => AuditSlot::Armed(event, provisional),
        };
    }

    /// Writes an event on its own.
    pub async fn write_audit(&self, record: &AuditRecord, outcome: &str, status: u16) -> StoreResult<()> {
        self.one(insert(record, outcome, Some(status))?).await.map(drop)
    }

    /// Marks a provisional event written with its change as a success: the request succeeded.
    pub async fn confirm_audit(&self, id: i64) -> StoreResult<()> {
        self.one(sql!("UPDATE audit_events SET outcome = 'SUCCESS', status = NULL WHERE id = ?1", id)).await.map(drop)
    }

    /// Marks an event written with its change as failed after all (the request failed later).
    pub async fn fail_audit(&self, id: i64, status: u16) -> StoreResult<()> {
        self.one(sql!("UPDATE audit_events SET outcome = 'FAILURE', status = ?2 WHERE id = ?1", id, i64::from(status)))
            .await
            .map(drop)
    }

    /// A page of events, newest first, as `query` filters them; whether another page follows.
    pub(crate) async fn audit_events(&self, query: &EventQuery) -> StoreResult<(Vec<AuditRow>, bool)> {
        let (cursor_at, cursor_id) = query.cursor.map_or((None, None), |c| (Some(c.at.millis()), Some(c.id)));
        let statement = Statement::new(
            "SELECT id, at, author_id, author_name, author_slug, author_type, source, category, action, method, \
             path, status, outcome, objects, changed FROM audit_events \
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at <= ?2) \
             AND (?3 IS NULL OR at < ?3 OR (at = ?3 AND id < ?4)) \
             AND (?5 IS NULL OR author_id IN (SELECT value FROM json_each(?5))) \
             AND (?6 IS NULL OR category IN (SELECT value FROM json_each(?6))) \
             AND (?7 IS NULL OR action IN (SELECT value FROM json_each(?7))) \
             AND (?8 IS NULL OR EXISTS (SELECT 1 FROM json_each(?8) o WHERE instr(object_keys, o.value) > 0)) \
             AND (?9 IS NULL OR instr(lower(author_name || ' ' || category || ' ' || action || ' ' || path || ' ' \
                  || objects || ' ' || changed || ' ' || coalesce(source, '')), lower(?9)) > 0) \
             ORDER BY at DESC, id DESC LIMIT ?10 OFFSET ?11",
            vec![
                query.from.map(Timestamp::millis).into(),
                query.to.map(Timestamp::millis).into(),
                cursor_at.into(),
                cursor_id.into(),
                any_of(&query.user_ids)?,
                any_of(&query.categories)?,
                any_of(&query.actions)?,
                any_of(&query.objects)?,
                query.search.clone().into(),
                i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX).into(),
                i64::try_from(query.offset).unwrap_or(i64::MAX).into(),
            ],
        );
        Ok(split_page(self.rows::<AuditRow>(statement).await?, query.limit))
    }

    /// Deletes events recorded before `cutoff`, oldest first, at most `limit` of them, in one
    /// statement; how many.
    pub async fn prune_audit_events(&self, cutoff: Timestamp, limit: u64) -> StoreResult<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let outcome = self
            .one(sql!(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT id FROM audit_events WHERE at < ?1 ORDER BY at, id LIMIT ?2)",
                cutoff.millis(),
                limit
            ))
            .await?;
        Ok(outcome.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::writes;

    #[test]
    fn reads_and_writes_are_told_apart() {
        assert!(!writes("SELECT * FROM users"));
        assert!(!writes("  select 1"));
        assert!(!writes("WITH x AS (SELECT 1) SELECT * FROM x"));
        assert!(writes("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x"));
        assert!(writes("INSERT INTO t VALUES (1)"));
        assert!(writes("UPDATE t SET a = 1"));
        assert!(writes("DELETE FROM t"));
    }
}
