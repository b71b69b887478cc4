//! Small field checks that collect every failure before refusing.

use crate::error::{ApiError, FieldError};

/// The OpenAPI `pattern` of a text that must not be blank: it has a character that `str::trim`
/// keeps (one that is not Unicode `White_Space`), spelled out because `\s` means a slightly
/// different set in each regex dialect. Schemas write `pattern = "\\S"`; the document spells it
/// out as this (`app::common_responses`).
pub const NON_BLANK: &str = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

#[derive(Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, pointer: &str, code: &str, detail: impl Into<String>) {
        self.0.push(FieldError::new(pointer, code, detail));
    }

    /// Trims `value` and checks its length in characters: at least `min` once trimmed (1: not
    /// blank, as the document's `NON_BLANK` pattern says), at most `max` as sent (as the
    /// document's `maxLength` counts).
    pub fn text(&mut self, pointer: &str, value: &str, min: usize, max: usize) -> String {
        let v = value.trim();
        if v.chars().count() < min {
            if min == 1 {
                self.add(pointer, "required", "must not be empty");
            } else {
                self.add(pointer, "length", format!("must be at least {min} characters"));
            }
        } else if value.chars().count() > max {
            self.add(pointer, "length", format!("must be at most {max} characters"));
        }
        v.to_owned()
    }

    pub fn email(&mut self, pointer: &str, value: &str) -> String {
        let v = value.trim().to_owned();
        let ok = v.len() <= 254
            && v.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
            })
            && !v.chars().any(char::is_whitespace)
            && v.matches('@').count() == 1;
        if !ok {
            self.add(pointer, "format", "must be an email address");
        }
        v
    }

    pub fn password(&mut self, pointer: &str, value: &str) {
        let n = value.chars().count();
        if n < 10 {
            self.add(pointer, "length", "must be at least 10 characters");
        } else if n > 1024 {
            self.add(pointer, "length", "must be at most 1024 characters");
        }
    }

    /// The failures so far, to combine with others (schema validation).
    pub fn into_fields(self) -> Vec<FieldError> {
        self.0
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::Validation(self.0)) }
    }
}

/// Page bounds for `page`/`limit` lists.
pub fn page(errors: &mut Errors, page: Option<i64>, limit: Option<i64>) -> (i64, i64) {
    let limit = limit.unwrap_or(super::routes::DEFAULT_LIMIT);
    let page = page.unwrap_or(1);
    if !(1..=super::routes::MAX_LIMIT).contains(&limit) {
        errors.add("?limit", "range", format!("must be between 1 and {}", super::routes::MAX_LIMIT));
    }
    if !(1..=super::routes::MAX_PAGE).contains(&page) {
        errors.add("?page", "range", format!("must be between 1 and {}", super::routes::MAX_PAGE));
    }
    (page.clamp(1, super::routes::MAX_PAGE), limit.clamp(1, super::routes::MAX_LIMIT))
}

/// A store refusal of a duplicate name (a unique constraint named `…_name`) as a field error at
/// `pointer`; any other error as it is.
pub fn name_taken(e: archer_store::StoreError, pointer: &str) -> ApiError {
    match e {
        archer_store::StoreError::Constraint { ref constraint, .. } if constraint.ends_with("_name") => {
            ApiError::field(pointer, "taken", "this name is already in use")
        }
        other => other.into(),
    }
}

/// `?limit` of a list: `1..=max` items, `default` when absent.
pub fn limit(errors: &mut Errors, limit: Option<i64>, default: i64, max: i64) -> i64 {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        errors.add("?limit", "range", format!("must be between 1 and {max}"));
    }
    limit
}

/// `?cursor` of a keyset list: a previous page's `next_cursor`, the (positive) id of the last
/// row it showed.
pub fn cursor(errors: &mut Errors, cursor: Option<&str>) -> Option<i64> {
    match cursor.map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) if id > 0 => Some(id),
        Some(_) => {
            errors.add("?cursor", "invalid", "not a cursor from a previous page");
            None
        }
    }
}

/// The `next_cursor` of a keyset page: the last row's id when the page is full (there may be
/// more), none on the last page.
pub fn next_cursor<T, Id: ToString>(rows: &[T], limit: i64, id: impl Fn(&T) -> Id) -> Option<String> {
    (rows.len() as i64 == limit).then(|| rows.last().map(|r| id(r).to_string())).flatten()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_non_blank_pattern_is_what_trim_keeps() {
        let v = jsonschema::draft202012::new(&serde_json::json!({"type": "string", "pattern": NON_BLANK})).unwrap();
        for c in (0..0x3100u32).chain([0xfeff, 0x1_0000]).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(v.is_valid(&serde_json::json!(s)), !s.trim().is_empty(), "U+{:04X}", c as u32);
        }
        assert!(!v.is_valid(&serde_json::json!(" \t\u{3000} ")));
        assert!(v.is_valid(&serde_json::json!(" x ")));
    }

    #[test]
    fn lengths_count_what_was_sent_and_emptiness_what_is_kept() {
        let mut e = Errors::new();
        assert_eq!(e.text("/a", " ab ", 1, 4), "ab");
        e.text("/b", " abcd ", 1, 5);
        match e.into_result() {
            Err(ApiError::Validation(errs)) => assert_eq!(errs[0].pointer, "/b"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cursors_and_limits_are_checked_together() {
        let mut e = Errors::new();
        assert_eq!(cursor(&mut e, None), None);
        assert_eq!(cursor(&mut e, Some("42")), Some(42));
        assert_eq!(limit(&mut e, None, 50, 500), 50);
        assert!(e.into_result().is_ok());
        let mut e = Errors::new();
        for bad in ["0", "-3", "abc", ""] {
            assert_eq!(cursor(&mut e, Some(bad)), None, "{bad:?}");
        }
        limit(&mut e, Some(501), 50, 500);
        limit(&mut e, Some(0), 50, 500);
        match e.into_result() {
            Err(ApiError::Validation(errs)) => {
                let found: Vec<_> = errs.iter().map(|e| (e.pointer.as_str(), e.code.as_str())).collect();
                assert_eq!(
                    found,
                    [("?cursor", "invalid"); 4].into_iter().chain([("?limit", "range"); 2]).collect::<Vec<_>>()
                );
                assert_eq!(errs[4].detail, "must be between 1 and 500");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_full_page_points_at_its_last_row_and_a_short_one_is_the_last() {
        assert_eq!(next_cursor(&[7, 9], 2, |r| *r), Some("9".to_owned()));
        assert_eq!(next_cursor(&[7], 2, |r| *r), None);
        assert_eq!(next_cursor::<i64, i64>(&[], 2, |r| *r), None);
    }

    #[test]
    fn collects_every_failure() {
        let mut e = Errors::new();
        e.text("/title", "   ", 1, 10);
        e.text("/name", &"x".repeat(11), 1, 10);
        e.email("/email", "not-an-email");
        e.email("/email2", "a@b.example");
        e.password("/password", "short");
        match e.into_result() {
            Err(ApiError::Validation(errs)) => {
                let pointers: Vec<_> = errs.iter().map(|e| e.pointer.as_str()).collect();
                assert_eq!(pointers, ["/title", "/name", "/email", "/password"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
