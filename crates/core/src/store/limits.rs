//! D1's documented limits on one statement (developers.cloudflare.com/d1/platform/limits): the
//! store must never build a statement past them, whatever the input, because D1 refuses it
//! outright. Every statement the core's tests run is checked here (the SQLite port panics on a
//! violation), and the edge checks again before sending, so a breach is a clear error naming the
//! limit rather than D1's.

use super::port::{Statement, Value};

/// Most bound parameters in one statement.
pub const MAX_BOUND_PARAMETERS: usize = 100;
/// Longest SQL text, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 100_000;
/// Largest string or blob (and row), in bytes.
pub const MAX_VALUE_BYTES: usize = 2_000_000;
/// Longest `LIKE` or `GLOB` pattern, in bytes.
pub const MAX_LIKE_PATTERN_BYTES: usize = 50;

/// Which limit a statement breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// More bound parameters than D1 accepts.
    #[error("{0} bound parameters (D1 accepts {MAX_BOUND_PARAMETERS})")]
    Parameters(usize),
    /// SQL text longer than D1 accepts.
    #[error("{0} bytes of SQL (D1 accepts {MAX_STATEMENT_BYTES})")]
    StatementLength(usize),
    /// A bound value larger than D1 stores.
    #[error("parameter ?{0} holds {1} bytes (D1 stores {MAX_VALUE_BYTES})")]
    Value(usize, usize),
    /// A bound `LIKE` pattern longer than D1 matches.
    #[error("the LIKE pattern in ?{0} is {1} bytes (D1 matches {MAX_LIKE_PATTERN_BYTES})")]
    LikePattern(usize, usize),
}

/// Checks one statement against every limit.
pub fn check(statement: &Statement) -> Result<(), LimitExceeded> {
    if statement.params.len() > MAX_BOUND_PARAMETERS {
        return Err(LimitExceeded::Parameters(statement.params.len()));
    }
    if statement.sql.len() > MAX_STATEMENT_BYTES {
        return Err(LimitExceeded::StatementLength(statement.sql.len()));
    }
    for (i, value) in statement.params.iter().enumerate() {
        if let Value::Text(text) = value
            && text.len() > MAX_VALUE_BYTES
        {
            return Err(LimitExceeded::Value(i + 1, text.len()));
        }
    }
    // A pattern bound as `LIKE ?N` (or `GLOB ?N`): its value is the pattern.
    for keyword in ["LIKE ?", "GLOB ?"] {
        for (at, _) in statement.sql.match_indices(keyword) {
            let digits: String = statement.sql[at + keyword.len()..].chars().take_while(char::is_ascii_digit).collect();
            let Ok(n) = digits.parse::<usize>() else { continue };
            if let Some(Value::Text(pattern)) = statement.params.get(n.wrapping_sub(1))
                && pattern.len() > MAX_LIKE_PATTERN_BYTES
            {
                return Err(LimitExceeded::LikePattern(n, pattern.len()));
            }
        }
    }
    Ok(())
}

/// SQL for "`column` contains the text bound as `?{param}`", case-insensitive for ASCII as
/// `LIKE` is, but through `instr`, which has no pattern-length limit and no wildcards to escape.
pub(crate) fn contains(column: &str, param: usize) -> String {
    format!("instr(lower({column}), lower(?{param})) > 0")
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn each_limit_is_named_when_broken() {
        let params = |n: usize| (0..n).map(|i| Value::Integer(i64::try_from(i).unwrap_or(0))).collect();
        assert_eq!(check(&Statement::new("SELECT 1", params(100))), Ok(()));
        assert_eq!(check(&Statement::new("SELECT 1", params(101))), Err(LimitExceeded::Parameters(101)));
        let long = format!("SELECT '{}'", "x".repeat(MAX_STATEMENT_BYTES));
        assert!(matches!(check(&Statement::new(long, vec![])), Err(LimitExceeded::StatementLength(_))));
        let big = Value::Text("x".repeat(MAX_VALUE_BYTES + 1));
        assert_eq!(check(&Statement::new("SELECT ?1", vec![big])), Err(LimitExceeded::Value(1, MAX_VALUE_BYTES + 1)));
        let pattern = Value::Text(format!("%{}%", "a".repeat(49)));
        let like = Statement::new("SELECT 1 WHERE ?1 = 1 OR name LIKE ?2", vec![Value::Integer(1), pattern]);
        assert_eq!(check(&like), Err(LimitExceeded::LikePattern(2, 51)));
    }
}
