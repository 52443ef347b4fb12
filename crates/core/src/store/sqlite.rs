//! The [`Database`] port over real SQLite (bundled), with the real `migrations/` applied: what
//! the core's tests run the storage SQL on.

use std::cell::RefCell;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use super::port::{Database, DatabaseError, Outcome, Statement, Value};

/// Every table's rows, AUTOINCREMENT counters included, as [`SqliteDatabase::snapshot`] took them.
pub struct Snapshot(Vec<(String, Vec<Vec<rusqlite::types::Value>>)>);

/// An in-memory SQLite database with the schema applied.
pub struct SqliteDatabase {
    conn: RefCell<Connection>,
    /// Batches run so far (each would be one D1 round trip).
    pub round_trips: std::cell::Cell<u32>,
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn failure(e: rusqlite::Error) -> DatabaseError {
    DatabaseError::from_message(e.to_string())
}

impl SqliteDatabase {
    /// A fresh database with every migration of `migrations/` applied in order.
    pub fn migrated() -> Self {
        let conn = Connection::open_in_memory().expect("open sqlite");
        // D1 enforces foreign keys; so must the tests.
        conn.execute_batch("PRAGMA foreign_keys = ON;").expect("foreign keys");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("migrations dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        for file in files {
            let sql = std::fs::read_to_string(&file).expect("read migration");
            conn.execute_batch(&sql).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
        Self { conn: RefCell::new(conn), round_trips: std::cell::Cell::new(0) }
    }

    /// Runs SQL directly (test set-up, e.g. a trigger that makes a statement fail).
    pub fn execute(&self, sql: &str) {
        self.conn.borrow().execute_batch(sql).expect("execute");
    }

    /// One number from a query (test assertions).
    pub fn count(&self, sql: &str) -> i64 {
        self.conn.borrow().query_row(sql, [], |r| r.get(0)).expect("count")
    }

    /// One text from a query (test assertions); empty for `NULL`.
    pub fn text(&self, sql: &str) -> String {
        self.conn.borrow().query_row(sql, [], |r| r.get::<_, Option<String>>(0)).expect("text").unwrap_or_default()
    }

    /// Every row of every table but `skip`, as sorted text: equal dumps mean equal contents.
    pub fn dump(&self, skip: &[&str]) -> String {
        let conn = self.conn.borrow();
        let mut tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("tables");
        tables.retain(|t| !skip.contains(&t.as_str()));
        let mut out = String::new();
        for table in tables {
            let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).expect("select");
            let width = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    let cells: Vec<String> = (0..width)
                        .map(|i| match r.get_ref(i) {
                            Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                            Ok(ValueRef::Integer(n)) => n.to_string(),
                            Ok(ValueRef::Null) => "NULL".into(),
                            other => format!("{other:?}"),
                        })
                        .collect();
                    Ok(cells.join("|"))
                })
                .and_then(Iterator::collect)
                .expect("rows");
            rows.sort();
            out.push_str(&format!("== {table} ({})\n{}\n", rows.len(), rows.join("\n")));
        }
        out
    }

    /// Every table's rows, to go back to with [`SqliteDatabase::restore`] (a test that runs one
    /// request again and again from the same state).
    pub fn snapshot(&self) -> Snapshot {
        let conn = self.conn.borrow();
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND (name NOT LIKE 'sqlite_%' OR name = 'sqlite_sequence') ORDER BY name",
            )
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("tables");
        let mut copy = Vec::with_capacity(tables.len());
        for table in tables {
            let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).expect("select");
            let width = stmt.column_count();
            let rows: Vec<Vec<rusqlite::types::Value>> = stmt
                .query_map([], |r| (0..width).map(|i| r.get(i)).collect())
                .and_then(Iterator::collect)
                .expect("rows");
            copy.push((table, rows));
        }
        Snapshot(copy)
    }

    /// Puts every table back as `snapshot` found it (triggers and foreign keys held off meanwhile,
    /// so the rows come back exactly, no more).
    pub fn restore(&self, snapshot: &Snapshot) {
        let mut conn = self.conn.borrow_mut();
        let triggers: Vec<(String, String)> = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("triggers");
        conn.execute_batch("PRAGMA foreign_keys = OFF;").expect("foreign keys off");
        let tx = conn.transaction().expect("begin");
        for (name, _) in &triggers {
            tx.execute_batch(&format!("DROP TRIGGER \"{name}\";")).expect("drop trigger");
        }
        for (table, rows) in &snapshot.0 {
            tx.execute(&format!("DELETE FROM \"{table}\""), []).expect("delete");
            for row in rows {
                let marks = vec!["?"; row.len()].join(", ");
                tx.execute(&format!("INSERT INTO \"{table}\" VALUES ({marks})"), rusqlite::params_from_iter(row))
                    .expect("insert");
            }
        }
        for (_, sql) in &triggers {
            tx.execute_batch(sql).expect("create trigger");
        }
        tx.commit().expect("commit");
        conn.execute_batch("PRAGMA foreign_keys = ON;").expect("foreign keys on");
    }

    fn run(conn: &Connection, statement: &Statement) -> Result<Outcome, DatabaseError> {
        let mut stmt = conn.prepare(&statement.sql).map_err(failure)?;
        // What D1 reports as `meta.changes`: rows written by this statement (none by a read).
        let readonly = stmt.readonly();
        let names: Vec<String> = stmt.column_names().iter().map(|s| (*s).to_owned()).collect();
        let params = rusqlite::params_from_iter(statement.params.iter());
        let mut rows = stmt.query(params).map_err(failure)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(failure)? {
            let mut map = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let value = match row.get_ref(i).map_err(failure)? {
                    ValueRef::Null => serde_json::Value::Null,
                    ValueRef::Integer(n) => n.into(),
                    ValueRef::Real(f) => f.into(),
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                    ValueRef::Blob(_) => return Err(DatabaseError::Unreadable("blob column".into())),
                };
                map.insert(name.clone(), value);
            }
            out.push(map);
        }
        drop(rows);
        let rows = serde_json::to_string(&out).map_err(|e| DatabaseError::Unreadable(e.to_string()))?;
        Ok(Outcome { rows, changes: if readonly { 0 } else { conn.changes() } })
    }
}

impl Database for SqliteDatabase {
    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Outcome>, DatabaseError> {
        self.round_trips.set(self.round_trips.get() + 1);
        let mut conn = self.conn.borrow_mut();
        // A D1 batch is one transaction: all statements or none.
        let tx = conn.transaction().map_err(failure)?;
        let mut outcomes = Vec::with_capacity(statements.len());
        for statement in &statements {
            // A statement D1 would refuse fails the test that built it, loudly.
            if let Err(e) = super::limits::check(statement) {
                panic!("a statement exceeds D1's limits: {e}\n{}", &statement.sql[..statement.sql.len().min(300)]);
            }
            outcomes.push(Self::run(&tx, statement)?);
        }
        tx.commit().map_err(failure)?;
        Ok(outcomes)
    }
}
