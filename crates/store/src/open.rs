//! Choosing a backend by URL: `postgres://` (or `postgresql://`) opens the PostgreSQL store,
//! anything else is a directory for the embedded SQLite store.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, Store, StoreError};

/// Where Audrey keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded store in this directory.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, e.g. `postgres://audrey@db.example:5432/audrey`.
    Postgres(String),
}

impl StoreUrl {
    /// `postgres://...` is PostgreSQL; `sqlite://DIR` or a bare path is the SQLite directory;
    /// no URL at all means the SQLite store in `data_dir`.
    pub fn parse(url: Option<&str>, data_dir: &std::path::Path) -> StoreUrl {
        match url.map(str::trim) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                StoreUrl::Postgres(url.to_string())
            }
            Some(url) if !url.is_empty() => {
                StoreUrl::Sqlite(PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url)))
            }
            _ => StoreUrl::Sqlite(data_dir.to_path_buf()),
        }
    }

    /// The URL with any password replaced, fit for logs.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(directory) => format!("sqlite://{}", directory.display()),
            StoreUrl::Postgres(url) => redact_password(url),
        }
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Opens (migrating first) the store the URL names. Blocks: call it off the async runtime.
pub fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite(directory) => {
            Arc::new(SqliteStore::open(directory, SqliteOptions::default())?)
        }
        StoreUrl::Postgres(url) => Arc::new(PostgresStore::open(url, PostgresOptions::default())?),
    })
}

/// Applies the migrations alone; answers `(version now, version this build knows)`.
pub fn migrate(url: &StoreUrl) -> Result<(usize, usize), StoreError> {
    Ok(match url {
        StoreUrl::Sqlite(directory) => (
            SqliteStore::migrate_only(directory)?,
            SqliteStore::schema_version(),
        ),
        StoreUrl::Postgres(url) => (
            PostgresStore::migrate_only(url)?,
            PostgresStore::schema_version(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_picks_postgres_and_anything_else_a_directory() {
        let data = std::path::Path::new("audrey-data");
        assert_eq!(
            StoreUrl::parse(Some("postgres://u@h/db"), data),
            StoreUrl::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            StoreUrl::parse(Some("sqlite:///var/lib/audrey"), data),
            StoreUrl::Sqlite("/var/lib/audrey".into())
        );
        assert_eq!(StoreUrl::parse(None, data), StoreUrl::Sqlite(data.into()));
    }

    #[test]
    fn a_password_never_reaches_the_log() {
        let url = StoreUrl::Postgres("postgres://audrey:secret@db:5432/audrey".into());
        assert_eq!(url.redacted(), "postgres://audrey:***@db:5432/audrey");
    }
}
