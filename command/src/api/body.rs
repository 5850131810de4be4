//! A JSON body extractor whose rejections are problem+json, with a size limit.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// Largest request body accepted (an HTML email fits comfortably).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The parsed body, and its canonical JSON form (keys sorted) for idempotency hashing.
pub struct JsonBody<T> {
    pub value: T,
    pub canonical: Vec<u8>,
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        parse(&read(req.into_body()).await?)
    }
}

/// The whole body, refused with `payload_too_large` past [`MAX_BODY_BYTES`].
pub async fn read(body: axum::body::Body) -> Result<Bytes, ApiError> {
    read_at_most(body, MAX_BODY_BYTES).await
}

/// The whole body, refused with `payload_too_large` past `limit` bytes.
pub async fn read_at_most(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))
}

/// Parses a JSON body: `invalid_json` when it is not JSON, `invalid_request` when it does not have
/// the shape of `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, ApiError> {
    let raw: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    // serde_json's map is ordered by key, so this is the same for the same document.
    let canonical = serde_json::to_vec(&raw).expect("a Value serializes");
    // The path says where in the document the shape is wrong (`content.sms: expected an object`).
    let value = serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        ApiError::InvalidRequest(if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        })
    })?;
    Ok(JsonBody { value, canonical })
}

/// A body that may be absent, blank or `null` (all meaning `T::default()`), read up to `limit`
/// bytes.
pub async fn optional<T: DeserializeOwned + Default>(
    body: axum::body::Body,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = read_at_most(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(parse::<Option<T>>(&bytes)?.value.unwrap_or_default())
}

/// A count of seconds as JSON gives it: `60.0` is the integer 60 (JSON Schema, and so the OpenAPI
/// document, calls it an integer); a fraction or a number out of `i64` is `-1`, out of every
/// range a caller allows.
pub fn whole_seconds(n: &serde_json::Number) -> i64 {
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::whole_seconds;
    use serde_json::Number;

    #[test]
    fn a_whole_float_is_its_integer_and_anything_else_is_out_of_range() {
        assert_eq!(whole_seconds(&Number::from(60)), 60);
        assert_eq!(whole_seconds(&Number::from_f64(60.0).unwrap()), 60);
        assert_eq!(whole_seconds(&Number::from_f64(1.5).unwrap()), -1);
        assert_eq!(whole_seconds(&Number::from_f64(1e20).unwrap()), -1);
        assert_eq!(whole_seconds(&Number::from(u64::MAX)), -1);
    }
}
