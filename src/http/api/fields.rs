//! What several resources share in their request bodies: three-state fields for updates,
//! write-only secrets, and `meta`.

use sea_orm::sea_query::{Expr, IntoCondition};
use sea_orm::{Condition, DatabaseBackend};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// What fetch and list show for a secret that is set.
pub const MASK: &str = "********";

/// Largest `meta` object we store, serialized.
pub const MAX_META_BYTES: usize = 16 * 1024;

/// A field of an update body: absent (leave it), `null` (clear it), or a value.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Missing,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    // Only called when the key is present (fields carry `#[serde(default)]`), so `null` and a
    // missing key can be told apart.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Self::Null,
            Some(v) => Self::Value(v),
        })
    }
}

impl<T> Patch<T> {
    /// The new value of a nullable column, or `None` to leave it as it is.
    pub fn resolve(self) -> Option<Option<T>> {
        match self {
            Self::Missing => None,
            Self::Null => Some(None),
            Self::Value(v) => Some(Some(v)),
        }
    }
}

/// Sets each named `Patch` field of an update body on the active model field of the same
/// name, leaving fields that were not sent alone: `apply_patches!(body, am: name, description)`.
macro_rules! apply_patches {
    ($body:ident, $am:ident: $($field:ident),* $(,)?) => {$(
        if let Some(v) = $body.$field.resolve() {
            $am.$field = sea_orm::ActiveValue::Set(v);
        }
    )*};
}
pub(crate) use apply_patches;

/// A secret sent in a create or update body.
pub enum SecretInput {
    /// Leave the stored value: the field was absent, or sent back masked.
    Keep,
    /// Remove the stored value: `null` or an empty string.
    Clear,
    Set(SecretString),
}

impl SecretInput {
    pub fn from_patch(field: &str, p: Patch<String>) -> ApiResult<Self> {
        Ok(match p {
            Patch::Missing => Self::Keep,
            Patch::Value(v) if v == MASK => Self::Keep,
            Patch::Null => Self::Clear,
            Patch::Value(v) if v.is_empty() => Self::Clear,
            Patch::Value(v) => {
                if v.len() > 4096 || v.chars().any(char::is_control) {
                    return Err(ApiError::bad_request(format!(
                        "{field} must be at most 4096 characters without control characters"
                    )));
                }
                Self::Set(SecretString::from(v))
            }
        })
    }
}

impl SecretInput {
    /// The value to store: sealed under the master key, bound to `context` (see
    /// [`crate::crypto::Vault::seal`]), or the current one kept, or nothing.
    pub fn seal(
        self,
        vault: &crate::crypto::Vault,
        current: Option<String>,
        context: &str,
    ) -> ApiResult<Option<String>> {
        use secrecy::ExposeSecret;
        match self {
            Self::Keep => Ok(current),
            Self::Clear => Ok(None),
            Self::Set(v) => vault
                .seal(v.expose_secret(), context)
                .map(Some)
                .map_err(ApiError::internal),
        }
    }
}

/// Where a secret column's value is bound when sealed: tenant, table, row and column.
pub fn secret_context(tenant_id: &str, table: &str, id: &str, column: &str) -> String {
    format!("{tenant_id}/{table}/{id}/{column}")
}

/// How a stored secret is shown: masked when set, `null` when not.
pub fn masked(stored: &Option<String>) -> Option<String> {
    stored.as_ref().map(|_| MASK.to_owned())
}

/// Checks an optional free-text field: at most `max` characters, no control characters but
/// newlines and tabs.
pub fn check_text(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ApiError::bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// `check_text` over a patch.
pub fn check_patch(field: &str, p: &Patch<String>, max: usize) -> ApiResult<()> {
    if let Patch::Value(v) = p {
        check_text(field, v, max)?;
    }
    Ok(())
}

fn check_meta_size(meta: &Map<String, Value>) -> ApiResult<()> {
    let size = serde_json::to_vec(meta)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_META_BYTES {
        return Err(ApiError::bad_request(format!(
            "meta must be at most {MAX_META_BYTES} bytes of JSON"
        )));
    }
    Ok(())
}

/// `meta` on create: an object (or absent, meaning empty). `null` values are dropped, as an
/// update would.
pub fn new_meta(meta: Option<Map<String, Value>>) -> ApiResult<Value> {
    let meta: Map<String, Value> = meta
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect();
    check_meta_size(&meta)?;
    Ok(Value::Object(meta))
}

/// `meta` on update: each key sent replaces the stored one, a key sent as `null` is removed,
/// keys not sent stay. The merge is one level deep: a nested object sent replaces the stored
/// one whole.
pub fn merge_meta(stored: &Value, patch: Option<Map<String, Value>>) -> ApiResult<Option<Value>> {
    let Some(patch) = patch else {
        return Ok(None);
    };
    let mut merged = stored.as_object().cloned().unwrap_or_default();
    for (k, v) in patch {
        if v.is_null() {
            merged.remove(&k);
        } else {
            merged.insert(k, v);
        }
    }
    check_meta_size(&merged)?;
    Ok(Some(Value::Object(merged)))
}

/// `meta` filters from a list's query string. The SDK sends `meta.KEY=VALUE`; `meta[KEY]=VALUE`
/// is accepted too. A filter matches a top-level key whose value, as text, equals it
/// (`meta.vip=true` matches `true`, `meta.n=1` matches `1` and `"1"`).
pub fn meta_filters(query: &str) -> ApiResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let key = if let Some(rest) = k.strip_prefix("meta.") {
            rest.to_owned()
        } else if let Some(rest) = k.strip_prefix("meta[").and_then(|r| r.strip_suffix(']')) {
            rest.to_owned()
        } else {
            continue;
        };
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !key_ok {
            return Err(ApiError::bad_request(
                "meta filter keys must be 1 to 64 letters, digits, '_' or '-'",
            ));
        }
        if v.len() > 256 {
            return Err(ApiError::bad_request(
                "meta filter values must be at most 256 bytes",
            ));
        }
        out.push((key, v.into_owned()));
    }
    if out.len() > 10 {
        return Err(ApiError::bad_request("at most 10 meta filters"));
    }
    Ok(out)
}

/// The SQL condition for `meta` filters on a JSON column, for either backend. Keys are checked
/// by [`meta_filters`] and values are bound, so nothing from the query lands in SQL text.
pub fn meta_condition(
    backend: DatabaseBackend,
    column: &str,
    filters: &[(String, String)],
) -> Condition {
    let mut cond = Condition::all();
    for (key, value) in filters {
        let expr = match backend {
            DatabaseBackend::Postgres => Expr::cust_with_values(
                // sea-query numbers PostgreSQL placeholders itself: `$1` is the first value.
                format!("(\"{column}\" ->> $1) = $2"),
                [key.clone(), value.clone()],
            ),
            // Compare the text of the value, as PostgreSQL's ->> does: 1 is "1", true is "true".
            _ => {
                let path = format!("$.\"{key}\"");
                Expr::cust_with_values(
                    format!(
                        "(CASE json_type(\"{column}\", ?) WHEN 'true' THEN 'true' \
                         WHEN 'false' THEN 'false' \
                         ELSE CAST(json_extract(\"{column}\", ?) AS TEXT) END) = ?"
                    ),
                    [path.clone(), path, value.clone()],
                )
            }
        };
        cond = cond.add(expr.into_condition());
    }
    cond
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meta_merges_one_level_and_null_removes() {
        let stored = json!({"a": 1, "b": {"x": 1}, "c": "keep"});
        let patch = json!({"a": null, "b": {"y": 2}, "d": [1, 2]});
        let merged = merge_meta(&stored, patch.as_object().cloned())
            .unwrap()
            .unwrap();
        assert_eq!(merged, json!({"b": {"y": 2}, "c": "keep", "d": [1, 2]}));
        assert_eq!(merge_meta(&stored, None).unwrap(), None);
    }

    #[test]
    fn meta_filters_read_both_notations_and_refuse_odd_keys() {
        let f = meta_filters("take=5&meta.team=sales&meta%5Bregion%5D=eu").unwrap();
        assert_eq!(
            f,
            vec![
                ("team".into(), "sales".into()),
                ("region".into(), "eu".into())
            ]
        );
        assert!(meta_filters("meta.a%27b=1").is_err());
        assert!(meta_filters("meta.=1").is_err());
    }

    #[test]
    fn patches_tell_missing_from_null() {
        #[derive(Deserialize)]
        struct B {
            #[serde(default)]
            x: Patch<String>,
        }
        let b: B = serde_json::from_str("{}").unwrap();
        assert_eq!(b.x, Patch::Missing);
        let b: B = serde_json::from_str(r#"{"x": null}"#).unwrap();
        assert_eq!(b.x, Patch::Null);
        let b: B = serde_json::from_str(r#"{"x": "v"}"#).unwrap();
        assert_eq!(b.x, Patch::Value("v".into()));
    }
}
