//! HTTP conditional requests on single resources: `ETag` on every answer that carries one
//! record, `If-None-Match` on reads (304), `If-Match` on writes (412 on a lost update).
//!
//! The tag itself is the registry's version tag (a hash of the record as clients see it,
//! `updated_at` included); this module only reads and writes the headers.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use audrey_model::{FieldError, Reason};

use crate::ApiError;
use crate::registry::{Precondition, version_tag};

/// The entity tags listed in a header, or `None` for `*`. Weak tags (`W/"..."`) never match
/// a strong comparison, so they are dropped for `If-Match`.
fn listed_tags(value: &str, keep_weak: bool) -> Option<Vec<String>> {
    if value.trim() == "*" {
        return None;
    }
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter_map(|tag| match tag.strip_prefix("W/") {
                Some(weak) if keep_weak => Some(weak.to_string()),
                Some(_) => None,
                None => Some(tag.to_string()),
            })
            .filter(|tag| !tag.is_empty())
            .collect(),
    )
}

fn header_text<'a>(
    headers: &'a HeaderMap,
    name: &header::HeaderName,
) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|value| {
            value.to_str().map_err(|_| {
                ApiError::invalid(
                    format!("the {name} header is not readable text"),
                    vec![FieldError::new(
                        name.as_str(),
                        Reason::InvalidFormat,
                        "must be a list of quoted entity tags or *",
                    )],
                )
            })
        })
        .transpose()
}

/// The write precondition in `If-Match`.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    Ok(match header_text(headers, &header::IF_MATCH)? {
        None => Precondition::None,
        Some(value) => match listed_tags(value, false) {
            None => Precondition::Exists,
            Some(tags) => Precondition::OneOf(tags),
        },
    })
}

/// Renders one record with its `ETag`; answers 304 instead when `If-None-Match` (given for
/// reads only) already names that tag.
pub(crate) fn entity_response<T: Serialize>(
    status: StatusCode,
    entity: &T,
    read_headers: Option<&HeaderMap>,
) -> Result<Response, ApiError> {
    let tag = version_tag(entity);
    let tag_value = HeaderValue::from_str(&tag).ok();
    if let Some(headers) = read_headers
        && let Some(value) = header_text(headers, &header::IF_NONE_MATCH)?
    {
        let unchanged = match listed_tags(value, true) {
            None => true,
            Some(tags) => tags.contains(&tag),
        };
        if unchanged {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            if let Some(value) = tag_value {
                response.headers_mut().insert(header::ETAG, value);
            }
            return Ok(response);
        }
    }
    let mut response = (status, Json(entity)).into_response();
    if let Some(value) = tag_value {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_means_any_and_weak_tags_never_match_strongly() {
        assert_eq!(listed_tags(" * ", false), None);
        assert_eq!(
            listed_tags(r#""a", W/"b", "c""#, false),
            Some(vec![r#""a""#.to_string(), r#""c""#.to_string()])
        );
        assert_eq!(
            listed_tags(r#"W/"b""#, true),
            Some(vec![r#""b""#.to_string()])
        );
    }
}
