//! The core's storage port over D1: one `batch()` (or, for a single statement, one `all()`) per
//! call, so one network round trip, counted with its time for the `Server-Timing` header. Rows
//! cross from JavaScript as one JSON text per statement (`JSON.stringify`), which the core reads
//! straight into its row types: no per-field crossings, and the least code in the Worker.

use std::cell::Cell;

use js_sys::{Array, JSON, Reflect};
use mirrorfarm_core::store::port::{Database, DatabaseError, Outcome, Statement, Value};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::worker_sys::types::{D1Database as D1DatabaseSys, D1PreparedStatement as D1StatementSys};
use worker::{D1Database, D1PreparedStatement};

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

/// D1's message for a failure, with its cause (where SQLite's words are).
fn js_failure(e: JsValue) -> DatabaseError {
    let text = match e.dyn_ref::<js_sys::Error>() {
        Some(error) => {
            let cause = error.cause().dyn_ref::<js_sys::Error>().map(|c| String::from(c.message())).unwrap_or_default();
            format!("{}: {cause}", String::from(error.message()))
        }
        None => e.as_string().unwrap_or_else(|| "D1 failed".into()),
    };
    DatabaseError::from_message(text)
}

/// One statement's result: its rows as JSON text, and how many rows it changed.
fn outcome(result: &JsValue) -> Result<Outcome, DatabaseError> {
    let rows = Reflect::get(result, &"results".into()).map_err(js_failure)?;
    let rows = match rows.dyn_ref::<Array>() {
        Some(array) if array.length() > 0 => String::from(JSON::stringify(&rows).map_err(js_failure)?),
        _ => String::new(),
    };
    let meta = Reflect::get(result, &"meta".into()).map_err(js_failure)?;
    let changes = Reflect::get(&meta, &"changes".into()).ok().and_then(|c| c.as_f64()).unwrap_or(0.0);
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
        self.db.prepare(&statement.sql).bind(&args).map_err(|e| DatabaseError::from_message(e.to_string()))
    }

    /// Runs the statements, answering one result each: a D1 batch is one transaction; a single
    /// statement needs none.
    async fn run(&self, mut prepared: Vec<D1PreparedStatement>) -> Result<Array, DatabaseError> {
        let promise = match (prepared.pop(), prepared.is_empty()) {
            (Some(only), true) => {
                let statement: &D1StatementSys = only.inner();
                statement.all().map_err(js_failure)?
            }
            (Some(last), false) => {
                prepared.push(last);
                let db: &D1DatabaseSys = self.db.as_ref().unchecked_ref();
                db.batch(prepared.iter().map(|s| JsValue::from(s.inner().clone())).collect()).map_err(js_failure)?
            }
            (None, _) => return Ok(Array::new()),
        };
        let answer = JsFuture::from(promise).await.map_err(js_failure)?;
        Ok(answer.dyn_into::<Array>().unwrap_or_else(|one| Array::of1(&one)))
    }
}

impl Database for D1 {
    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Outcome>, DatabaseError> {
        // D1 refuses a statement past its limits with a bare error: say which limit instead.
        for statement in &statements {
            mirrorfarm_core::store::limits::check(statement)
                .map_err(|e| DatabaseError::Backend(format!("a statement exceeds D1's limits: {e}")))?;
        }
        let prepared = statements.iter().map(|s| self.prepare(s)).collect::<Result<Vec<_>, _>>()?;
        let started = js_sys::Date::now();
        let results = self.run(prepared).await;
        self.round_trips.set(self.round_trips.get() + 1);
        self.millis.set(self.millis.get() + (js_sys::Date::now() - started));
        results?.iter().map(|r| outcome(&r)).collect()
    }
}
