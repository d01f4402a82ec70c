//! Query shapes and the keyset cursor shared by every backend.

use base64::Engine;
use serde::Serialize;

use audrey_model::{FieldError, LocationId, Millis, ReadingId, Reason, SensorId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Newest,
    Oldest,
}

/// A position in `(read_at, id)` order: the last item of the previous page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub read_at: Millis,
    pub id: ReadingId,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let text = format!("{}/{}", self.read_at.0, self.id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(text: &str) -> Result<Cursor, FieldError> {
        let invalid = || {
            FieldError::new(
                "cursor",
                Reason::InvalidFormat,
                "is not a cursor this server issued",
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (read_at, id) = text.split_once('/').ok_or_else(invalid)?;
        Ok(Cursor {
            read_at: Millis(read_at.parse().map_err(|_| invalid())?),
            id: ReadingId::parse(id).map_err(|_| invalid())?,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct ReadingQuery {
    pub sensor: Option<SensorId>,
    pub location: Option<LocationId>,
    /// Inclusive lower bound on read_at.
    pub from: Option<Millis>,
    /// Exclusive upper bound on read_at.
    pub to: Option<Millis>,
    pub order: Order,
    pub limit: usize,
    pub after: Option<Cursor>,
    /// Only readings taken at a location inside this circle.
    pub near: Option<audrey_model::GeoCircle>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct QuarantineEntry {
    pub id: i64,
    pub received_at: Millis,
    pub sensor_id: Option<String>,
    pub reason: String,
    pub path: String,
    pub message: String,
    /// The raw payload as received (truncated to 64 KiB).
    pub payload: String,
}

#[derive(Clone, Debug, Default)]
pub struct QuarantineFilter {
    pub sensor: Option<String>,
    pub limit: usize,
    /// Entries with an id below this one (newest first).
    pub before: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SensorCounters {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

#[derive(Clone, Debug, Default)]
pub struct LocationFilter {
    pub country: Option<String>,
    pub city: Option<String>,
    pub include_deleted: bool,
    pub limit: usize,
    pub after: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct SensorFilter {
    pub location: Option<String>,
    pub kind: Option<String>,
    /// Only sensors whose location lies inside this circle.
    pub near: Option<audrey_model::GeoCircle>,
    pub include_deleted: bool,
    pub limit: usize,
    pub after: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoredToken {
    pub id: String,
    #[serde(skip)]
    pub hash: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub sensor_id: Option<String>,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// Where a staged change stands. Only a `Pending` change can be applied or cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StagedStatus {
    Pending,
    Applied,
    Cancelled,
}

impl StagedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StagedStatus::Pending => "pending",
            StagedStatus::Applied => "applied",
            StagedStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<StagedStatus> {
        match text {
            "pending" => Some(StagedStatus::Pending),
            "applied" => Some(StagedStatus::Applied),
            "cancelled" => Some(StagedStatus::Cancelled),
            _ => None,
        }
    }
}

/// A registry change recorded now and applied later, when someone follows its confirmation
/// link. The store keeps it opaque: `entity`, `action` and `body` mean something only to the
/// server that staged it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StagedChange {
    pub id: String,
    /// SHA-256 (hex) of the secret in the confirmation link; the secret itself is never stored.
    #[serde(skip)]
    pub link_hash: String,
    pub entity: String,
    pub entity_id: Option<String>,
    pub action: String,
    /// The request body to apply, as JSON text.
    pub body: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub status: StagedStatus,
    pub finished_at: Option<Millis>,
}
