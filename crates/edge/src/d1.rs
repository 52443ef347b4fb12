//! The core's storage port over D1: one `batch()` (or, for a single statement, one `all()`) per
//! call, so one network round trip, counted with its time for the `Server-Timing` header.

use std::cell::Cell;

use mirrorfarm_core::store::port::{Database, DatabaseError, Outcome, Row, Statement, Value};
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result};

/// D1, with a count of the round trips made through it.
pub(crate) struct D1 {
    db: D1Database,
    round_trips: Cell<u32>,
    millis: Cell<f64>,
}

fn bind(value: &Value) -> JsValue {
    match value {
        Value::Null => JsValue::NULL,
        // D1 binds JS numbers; ids and epoch-ms times fit in 53 bits.
        Value::Integer(n) => JsValue::from_f64(*n as f64),
        Value::Text(s) => JsValue::from_str(s),
    }
}

fn failure(e: worker::Error) -> DatabaseError {
    DatabaseError::from_message(e.to_string())
}

fn outcome(result: &D1Result) -> Result<Outcome, DatabaseError> {
    let rows = result.results::<Row>().map_err(failure)?;
    let changes = result.meta().map_err(failure)?.and_then(|m| m.changes).unwrap_or(0);
    Ok(Outcome { rows, changes: changes as u64 })
}

impl D1 {
    pub(crate) fn new(db: D1Database) -> Self {
        Self { db, round_trips: Cell::new(0), millis: Cell::new(0.0) }
    }

    /// Round trips made so far, and the milliseconds they took.
    pub(crate) fn spent(&self) -> (u32, f64) {
        (self.round_trips.get(), self.millis.get())
    }

    fn prepare(&self, statement: &Statement) -> Result<D1PreparedStatement, DatabaseError> {
        let args: Vec<JsValue> = statement.params.iter().map(bind).collect();
        self.db.prepare(&statement.sql).bind(&args).map_err(failure)
    }
}

impl Database for D1 {
    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Outcome>, DatabaseError> {
        let mut prepared = statements.iter().map(|s| self.prepare(s)).collect::<Result<Vec<_>, _>>()?;
        let started = js_sys::Date::now();
        // A D1 batch is one transaction; a single statement needs none.
        let results = match (prepared.pop(), prepared.is_empty()) {
            (Some(only), true) => only.all().await.map(|r| vec![r]),
            (Some(last), false) => {
                prepared.push(last);
                self.db.batch(prepared).await
            }
            (None, _) => Ok(Vec::new()),
        }
        .map_err(failure);
        self.round_trips.set(self.round_trips.get() + 1);
        self.millis.set(self.millis.get() + (js_sys::Date::now() - started));
        results?.iter().map(outcome).collect()
    }
}
