//! Pagination: the query parameters every list accepts, opaque keyset cursors, and the
//! `pagination` object of list answers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::model::filter::{Filter, Sort};
use crate::store::filter_sql::Cursor;
use crate::store::{ListSpec, Page};

/// The largest page any list returns.
pub const MAX_LIMIT: i64 = 1000;
/// The deepest legacy offset accepted; deeper pages use cursors.
pub const MAX_OFFSET: i64 = 10_000;

/// Pagination parameters as the contract spells them, from the query string or a body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageParams {
    pub limit: Option<i64>,
    pub page_size: Option<i64>,
    pub offset: Option<i64>,
    pub page: Option<i64>,
    pub cursor: Option<String>,
    pub next_cursor: Option<String>,
    pub after: Option<String>,
    pub include_total: Option<bool>,
}

impl PageParams {
    /// Fills every parameter this one leaves unset from `other`; used to let a body win over
    /// the query string.
    pub fn or(self, other: &PageParams) -> PageParams {
        PageParams {
            limit: self.limit.or(other.limit),
            page_size: self.page_size.or(other.page_size),
            offset: self.offset.or(other.offset),
            page: self.page.or(other.page),
            cursor: self.cursor.or_else(|| other.cursor.clone()),
            next_cursor: self.next_cursor.or_else(|| other.next_cursor.clone()),
            after: self.after.or_else(|| other.after.clone()),
            include_total: self.include_total.or(other.include_total),
        }
    }

    /// Checks the parameters and settles aliases: `limit` wins over `page_size`, `offset`
    /// over `page`, and any of the three cursor names may carry the cursor.
    ///
    /// # Errors
    ///
    /// A value out of range, or a cursor this server did not issue.
    pub fn resolve(&self, default_limit: i64, max_limit: i64) -> Result<PageRequest> {
        let limit = self.limit.or(self.page_size).unwrap_or(default_limit);
        if !(1..=max_limit).contains(&limit) {
            return Err(Error::invalid("limit", format!("expected 1 to {max_limit}")));
        }
        if let Some(page) = self.page
            && page < 1
        {
            return Err(Error::invalid("page", "expected 1 or more"));
        }
        let offset = self.offset.unwrap_or_else(|| (self.page.unwrap_or(1) - 1) * limit);
        if !(0..=MAX_OFFSET).contains(&offset) {
            return Err(Error::invalid(
                "offset",
                format!("expected 0 to {MAX_OFFSET}; page deeper with next_cursor"),
            ));
        }
        let raw_cursor = self.cursor.as_ref().or(self.next_cursor.as_ref()).or(self.after.as_ref());
        let after = raw_cursor.filter(|c| !c.is_empty()).map(|c| decode_cursor(c)).transpose()?;
        let offset = if after.is_some() { 0 } else { offset };
        Ok(PageRequest { limit, offset, after, include_total: self.include_total.unwrap_or(false) })
    }
}

/// Settled pagination of one list call.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: i64,
    pub offset: i64,
    pub after: Option<Cursor>,
    pub include_total: bool,
}

impl PageRequest {
    /// The store query for this page; `always_total` counts even when the caller did not ask.
    pub fn spec(&self, filter: Option<Filter>, sort: Option<Sort>, always_total: bool) -> ListSpec {
        ListSpec {
            filter,
            sort,
            after: self.after.clone(),
            offset: self.offset,
            limit: self.limit,
            include_total: always_total || self.include_total,
        }
    }

    /// The `pagination` object of a list answer. `next_cursor` is set when more rows follow.
    pub fn response(&self, page: &Page, next_cursor: Option<String>) -> Value {
        let page_number = self.offset / self.limit + 1;
        let total_pages = page.total.map(|t| (t + self.limit - 1) / self.limit);
        json!({
            "total": page.total,
            "page": page_number,
            "page_size": self.limit,
            "total_pages": total_pages,
            "next_page": None::<String>,
            "previous_page": None::<String>,
            "next_cursor": next_cursor,
            "has_more": page.has_more,
        })
    }
}

/// Encodes a keyset position as an opaque string.
pub fn encode_cursor(cursor: &Cursor) -> String {
    let raw = json!({"s": cursor.seq, "v": cursor.value});
    URL_SAFE_NO_PAD.encode(raw.to_string())
}

fn decode_cursor(raw: &str) -> Result<Cursor> {
    let bad = || Error::invalid("cursor", "not a cursor this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let seq = value.get("s").and_then(Value::as_i64).ok_or_else(bad)?;
    let value = value.get("v").cloned().filter(|v| !v.is_null());
    Ok(Cursor { seq, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor { seq: 42, value: Some(json!("b")) };
        let params = PageParams { after: Some(encode_cursor(&cursor)), ..Default::default() };
        let resolved = params.resolve(10, 100).unwrap();
        let after = resolved.after.unwrap();
        assert_eq!(after.seq, 42);
        assert_eq!(after.value, Some(json!("b")));

        let params = PageParams { cursor: Some("garbage!".into()), ..Default::default() };
        assert!(params.resolve(10, 100).is_err());
    }

    #[test]
    fn aliases_and_bounds() {
        let params = PageParams { page_size: Some(5), page: Some(3), ..Default::default() };
        let resolved = params.resolve(10, 100).unwrap();
        assert_eq!((resolved.limit, resolved.offset), (5, 10));

        let params = PageParams { limit: Some(7), page_size: Some(5), ..Default::default() };
        assert_eq!(params.resolve(10, 100).unwrap().limit, 7);

        let params = PageParams { limit: Some(0), ..Default::default() };
        assert!(params.resolve(10, 100).is_err());
        let params = PageParams { offset: Some(10_001), ..Default::default() };
        assert!(params.resolve(10, 100).is_err());
    }
}
