//! Bearer tokens: generation, hashing, scopes and the request extractor.
//!
//! A token is `aud_` followed by 43 characters of URL-safe base64 (256 random bits). Only its
//! SHA-256 is stored; the secret is shown once, when it is created.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use audrey_model::{ErrorCode, FieldError, Millis, Reason, SensorId};
use audrey_store::{Store, StoreError, StoredToken};

use crate::{ApiError, AppState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Registry and tokens; implies read and write.
    Admin,
    /// Ingest.
    Write,
    /// Queries.
    Read,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "admin" => Some(Scope::Admin),
            "write" => Some(Scope::Write),
            "read" => Some(Scope::Read),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Write => "write",
            Scope::Read => "read",
        }
    }
}

pub(crate) fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn random_text(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}

/// Creates and stores a token; answers the stored record and the secret (shown once).
pub fn create_token(
    store: &dyn Store,
    name: &str,
    scopes: &[Scope],
    sensor: Option<&SensorId>,
) -> Result<(StoredToken, String), StoreError> {
    let id = hex::encode(&uuid::Uuid::now_v7().as_bytes()[10..]);
    create_token_with_id(store, id, name, scopes, sensor)
}

/// Refuses a token request without scopes or bound to a sensor that is not registered.
pub(crate) fn check_token_request(
    store: &dyn Store,
    scopes: &[Scope],
    sensor: Option<&SensorId>,
) -> Result<(), StoreError> {
    if scopes.is_empty() {
        return Err(StoreError::Invalid(vec![FieldError::new(
            "scopes",
            Reason::Empty,
            "name at least one of admin, write, read",
        )]));
    }
    if let Some(sensor) = sensor
        && store
            .sensor(sensor)?
            .is_none_or(|found| found.deleted_at.is_some())
    {
        return Err(StoreError::Invalid(vec![FieldError::new(
            "sensor_id",
            Reason::UnknownSensor,
            format!("no registered sensor has id {sensor}"),
        )]));
    }
    Ok(())
}

/// Like [`create_token`], with the id chosen by the caller (PUT).
pub(crate) fn create_token_with_id(
    store: &dyn Store,
    id: String,
    name: &str,
    scopes: &[Scope],
    sensor: Option<&SensorId>,
) -> Result<(StoredToken, String), StoreError> {
    check_token_request(store, scopes, sensor)?;
    let secret = format!("aud_{}", random_text(32));
    let token = StoredToken {
        id,
        hash: hash_token(&secret),
        name: name.to_string(),
        scopes: scopes
            .iter()
            .map(|scope| scope.as_str().to_string())
            .collect(),
        sensor_id: sensor.map(ToString::to_string),
        created_at: Millis::now(),
        revoked_at: None,
    };
    store.put_token(&token)?;
    Ok((token, secret))
}

/// On first start (no token at all), creates an admin token and writes it to
/// `<data_dir>/admin.token` with mode 0600. Answers the secret when it created one.
pub fn bootstrap_admin_token(
    store: &dyn Store,
    data_dir: &Path,
) -> Result<Option<String>, StoreError> {
    if !store.tokens()?.is_empty() {
        return Ok(None);
    }
    let (_, secret) = create_token(store, "bootstrap admin", &[Scope::Admin], None)?;
    let path = data_dir.join("admin.token");
    write_private_file(&path, &secret).map_err(|error| {
        StoreError::Unavailable(format!("cannot write {}: {error}", path.display()))
    })?;
    Ok(Some(secret))
}

fn write_private_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Token records by hash, so a request costs one SHA-256 and a map look-up: a hit answers on
/// the calling thread; only a miss reads the store (on a blocking thread).
///
/// Revocation: `invalidate` clears the map and bumps a generation counter. A miss notes the
/// generation before it reads the store and keeps what it read only when no invalidation
/// happened meanwhile, so a read that raced a revoke can never re-insert the stale record.
#[derive(Default)]
pub(crate) struct TokenCache {
    by_hash: RwLock<HashMap<String, Arc<StoredToken>>>,
    generation: AtomicU64,
}

impl TokenCache {
    /// The cached record, without touching the store.
    fn cached(&self, hash: &str) -> Option<Arc<StoredToken>> {
        self.by_hash
            .read()
            .ok()
            .and_then(|cache| cache.get(hash).cloned())
    }

    /// Reads the record from the store (blocking) and caches it.
    fn load(&self, store: &dyn Store, hash: &str) -> Result<Option<Arc<StoredToken>>, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let Some(token) = store.token_by_hash(hash)? else {
            return Ok(None);
        };
        let token = Arc::new(token);
        if let Ok(mut cache) = self.by_hash.write()
            && self.generation.load(Ordering::Acquire) == generation
        {
            cache.insert(hash.to_string(), token.clone());
        }
        Ok(Some(token))
    }

    /// Forgets everything, so the next request reads revocations from the store.
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.by_hash.write() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            cache.clear();
        }
    }
}

/// Who is calling: extracted from `Authorization: Bearer <token>` on every `/api` route.
#[derive(Clone, Debug)]
pub struct Principal {
    scopes: Vec<Scope>,
    pub sensor: Option<SensorId>,
    /// The id of the token this request came with.
    pub token_id: String,
}

impl Principal {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("this token lacks the {} scope", scope.as_str()),
            ))
        }
    }
}

/// Resolves the value of an `authorization` header (HTTP) or metadata entry (gRPC).
pub(crate) async fn authenticate(
    state: &AppState,
    header: Option<&str>,
) -> Result<Principal, ApiError> {
    let unauthenticated = |message: &str| ApiError::new(ErrorCode::Unauthenticated, message);
    let header = header.ok_or_else(|| unauthenticated("missing authorization: Bearer <token>"))?;
    let secret = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| unauthenticated("authorization must be: Bearer <token>"))?;
    let hash = hash_token(secret);
    // A cached token costs no thread hop; only a miss waits for the store.
    let token = match state.tokens.cached(&hash) {
        Some(token) => Some(token),
        None => {
            let store = state.store.clone();
            let tokens = state.tokens.clone();
            tokio::task::spawn_blocking(move || tokens.load(&*store, &hash))
                .await
                .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))??
        }
    };
    let token = token
        .filter(|token| token.revoked_at.is_none())
        .ok_or_else(|| unauthenticated("the token is unknown or revoked"))?;
    Ok(Principal {
        token_id: token.id.clone(),
        scopes: token
            .scopes
            .iter()
            .filter_map(|scope| Scope::parse(scope))
            .collect(),
        sensor: token
            .sensor_id
            .as_deref()
            .and_then(|id| SensorId::parse(id).ok()),
    })
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|value| value.to_str());
        match header {
            Some(Err(_)) => Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "the authorization header is not text",
            )),
            Some(Ok(value)) => authenticate(state, Some(value)).await,
            None => authenticate(state, None).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_hash_is_stable_and_does_not_contain_the_secret() {
        let hash = hash_token("aud_secret");
        assert_eq!(hash, hash_token("aud_secret"));
        assert!(!hash.contains("secret"));
        assert_ne!(hash, hash_token("aud_secreT"));
    }

    #[test]
    fn admin_implies_every_scope_but_write_does_not_imply_read() {
        let admin = Principal {
            scopes: vec![Scope::Admin],
            sensor: None,
            token_id: "a".into(),
        };
        assert!(admin.require(Scope::Read).is_ok() && admin.require(Scope::Write).is_ok());
        let writer = Principal {
            scopes: vec![Scope::Write],
            sensor: None,
            token_id: "w".into(),
        };
        assert!(writer.require(Scope::Write).is_ok());
        assert_eq!(
            writer.require(Scope::Read).unwrap_err().code,
            ErrorCode::PermissionDenied
        );
    }
}
