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
