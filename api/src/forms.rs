//! Catalog forms: JSON Schema (draft 2020-12) checked as a schema when an item is saved, and
//! request answers checked against it at submission, every failure reported by JSON pointer.

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::error::FieldError;

/// Builds a validator for a form schema (formats such as `email` and `date` are asserted).
fn validator(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::draft202012::options().should_validate_formats(true).build(schema).map_err(|e| e.to_string())
}

/// Checks that `schema` is a valid draft 2020-12 schema for an object form; problems are
/// reported under `prefix` (e.g. `/spec/form_schema`).
pub fn check_schema(schema: &Value, prefix: &str) -> Vec<FieldError> {
    let meta = jsonschema::draft202012::meta::validator();
    let mut errors: Vec<FieldError> = meta
        .iter_errors(schema)
        .map(|e| FieldError::new(format!("{prefix}{}", e.instance_path()), "schema", e.to_string()))
        .collect();
    if errors.is_empty() {
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            errors.push(FieldError::new(
                format!("{prefix}/type"),
                "schema",
                "a form schema describes an object (\"type\": \"object\")",
            ));
        }
        if let Err(e) = validator(schema) {
            errors.push(FieldError::new(prefix, "schema", e));
        }
    }
    errors
}

/// Every way `answers` fails `schema`, each with a pointer under `prefix` (`/fields`), the
/// rule (the schema keyword) and a message.
pub fn check_answers(schema: &Value, answers: &Value, prefix: &str) -> Result<Vec<FieldError>, String> {
    let v = validator(schema)?;
    let mut out = Vec::new();
    for e in v.iter_errors(answers) {
        let at = format!("{prefix}{}", e.instance_path());
        let rule = e.kind().keyword();
        match e.kind() {
            // point at the missing field itself, not at the object lacking it
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                // `dependentRequired` is checked as `required` under it; name the rule that failed
                let (rule, message) = if e.schema_path().to_string().ends_with("/dependentRequired") {
                    ("dependentRequired", format!("{name} is required with the fields it depends on"))
                } else {
                    (rule, format!("{name} is required"))
                };
                out.push(FieldError::new(format!("{at}/{}", escape(name)), rule, message));
            }
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for name in unexpected {
                    out.push(FieldError::new(
                        format!("{at}/{}", escape(name)),
                        rule,
                        format!("{name} is not a field of this form"),
                    ));
                }
            }
            _ => out.push(FieldError::new(at, rule, e.to_string())),
        }
    }
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    out.dedup_by(|a, b| a.pointer == b.pointer && a.code == b.code);
    Ok(out)
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn laptop() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["device", "justification"],
            "properties": {
                "device": {"type": "string", "enum": ["laptop", "desktop"]},
                "os": {"type": "string", "enum": ["linux", "macos", "windows"]},
                "justification": {"type": "string", "minLength": 20},
                "email": {"type": "string", "format": "email"}
            },
            "if": {"properties": {"device": {"const": "laptop"}}, "required": ["device"]},
            "then": {"required": ["os"]}
        })
    }

    #[test]
    fn every_failure_is_reported_with_its_pointer_and_rule() {
        let errs = check_answers(
            &laptop(),
            &json!({"device": "laptop", "justification": "short", "colour": "red", "email": "nope"}),
            "/fields",
        )
        .unwrap();
        let got: Vec<(&str, &str)> = errs.iter().map(|e| (e.pointer.as_str(), e.code.as_str())).collect();
        assert!(got.contains(&("/fields/os", "required")), "{got:?}");
        assert!(got.contains(&("/fields/justification", "minLength")), "{got:?}");
        assert!(got.contains(&("/fields/colour", "additionalProperties")), "{got:?}");
        assert!(got.contains(&("/fields/email", "format")), "{got:?}");
        assert!(
            check_answers(
                &laptop(),
                &json!({"device": "desktop", "justification": "I need a second screen for CAD work"}),
                "/fields"
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn schemas_are_checked_as_schemas() {
        assert!(check_schema(&laptop(), "/spec/form_schema").is_empty());
        let bad =
            check_schema(&json!({"type": "object", "properties": {"a": {"type": "strnig"}}}), "/spec/form_schema");
        assert!(!bad.is_empty());
        assert!(bad[0].pointer.starts_with("/spec/form_schema"), "{bad:?}");
        assert_eq!(check_schema(&json!({"type": "string"}), "/s")[0].pointer, "/s/type");
    }
}
