//! Which PostgreSQL failures mean "the database is not reachable now" (`Unavailable`, so the
//! caller may spool and retry) and which are real errors.

use tokio_postgres::error::SqlState;

use crate::StoreError;

/// SQLSTATEs that say the server cannot serve us right now, not that our request is wrong.
fn is_outage(state: &SqlState) -> bool {
    let code = state.code();
    // Class 08: connection exception. Class 57P: operator intervention (shutdown, restart).
    code.starts_with("08")
        || code.starts_with("57P")
        || *state == SqlState::TOO_MANY_CONNECTIONS
        || *state == SqlState::DISK_FULL
        || *state == SqlState::OUT_OF_MEMORY
        || *state == SqlState::READ_ONLY_SQL_TRANSACTION
}

pub(crate) fn from_pg(error: tokio_postgres::Error) -> StoreError {
    if error.is_closed() {
        return StoreError::Unavailable(format!("PostgreSQL connection closed: {error}"));
    }
    match error.code() {
        Some(state) if is_outage(state) => {
            StoreError::Unavailable(format!("PostgreSQL unavailable: {error}"))
        }
        Some(state) if *state == SqlState::UNIQUE_VIOLATION => {
            StoreError::Conflict(format!("{error}"))
        }
        Some(_) => StoreError::Internal(format!("PostgreSQL: {}", describe(&error))),
        // No SQLSTATE: the failure happened below SQL (I/O, protocol, a dropped socket).
        None => StoreError::Unavailable(format!("PostgreSQL unreachable: {error}")),
    }
}

pub(crate) fn from_pool(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => from_pg(error),
        other => StoreError::Unavailable(format!("PostgreSQL connection pool: {other}")),
    }
}

fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_and_connection_states_are_outages_and_bad_sql_is_not() {
        assert!(is_outage(&SqlState::ADMIN_SHUTDOWN));
        assert!(is_outage(&SqlState::CONNECTION_FAILURE));
        assert!(is_outage(&SqlState::CANNOT_CONNECT_NOW));
        assert!(!is_outage(&SqlState::SYNTAX_ERROR));
        assert!(!is_outage(&SqlState::UNIQUE_VIOLATION));
    }
}
