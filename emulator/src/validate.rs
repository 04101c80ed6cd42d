//! A small Swagger 2.0 validator for request bodies and path parameters, driven by the Azure ML
//! OpenAPI document (`emulator/spec/`).
//!
//! Supported: `$ref` (local and the common-types files), `allOf`, `discriminator` with
//! `x-ms-discriminator-value`, `type`/`format` (int32/int64 ranges), `enum` with
//! `x-ms-enum.modelAsString`, `required`, `properties`, `additionalProperties`, `items`,
//! `pattern`, `minLength`/`maxLength`, `minimum`/`maximum`, `minItems`/`maxItems`.
//! Like ARM: `readOnly` properties in a request are accepted and ignored, `null` is accepted for
//! any optional property, and unknown properties are ignored unless `reject_unknown` is set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

const ML_SPEC: &str = include_str!("../spec/machineLearningServices.json");
const TYPES_SPEC: &str = include_str!("../spec/common-types/resource-management/v3/types.json");
const MI_SPEC: &str =
    include_str!("../spec/common-types/resource-management/v3/managedidentity.json");

/// Document ids.
const ML: usize = 0;
const TYPES: usize = 1;
const MI: usize = 2;

/// The 2026-07-01 `computeName` pattern (CONTRACT §1); not in the 2025-12-01 swagger.
pub const COMPUTE_NAME_PATTERN_2026: &str = r"^[a-zA-Z](?![a-zA-Z0-9-]*-\d+$)[a-zA-Z0-9\-]{2,23}$";

/// A body that the spec does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// Dotted path of the offending field (`properties.properties.sshPort`); empty for the root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Validation options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Refuse properties the spec does not define.
    pub reject_unknown: bool,
}

/// Failed to load the embedded documents.
#[derive(Debug, thiserror::Error)]
#[error("embedded OpenAPI document is invalid JSON")]
pub struct SpecError(#[from] serde_json::Error);

/// The loaded OpenAPI documents.
pub struct Specs {
    docs: [Value; 3],
    /// (base definition, discriminator value) → subtype definition, in the ML document.
    subtypes: HashMap<(String, String), String>,
    regexes: Mutex<HashMap<String, Option<Arc<fancy_regex::Regex>>>>,
}

impl std::fmt::Debug for Specs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Specs")
            .field("subtypes", &self.subtypes.len())
            .finish()
    }
}

#[derive(Default)]
struct Flat<'a> {
    properties: Vec<(&'a str, usize, &'a Value)>,
    required: Vec<&'a str>,
    additional: Option<(usize, &'a Value)>,
    discriminator: Option<(&'a str, String)>,
    ty: Option<&'a str>,
}

impl Specs {
    /// Parse the embedded documents.
    pub fn load() -> Result<Self, SpecError> {
        let docs: [Value; 3] = [
            serde_json::from_str(ML_SPEC)?,
            serde_json::from_str(TYPES_SPEC)?,
            serde_json::from_str(MI_SPEC)?,
        ];
        let mut subtypes = HashMap::new();
        if let Some(defs) = docs[ML].get("definitions").and_then(Value::as_object) {
            for (name, def) in defs {
                let Some(all_of) = def.get("allOf").and_then(Value::as_array) else {
                    continue;
                };
                for item in all_of {
                    let Some(parent) = item
                        .get("$ref")
                        .and_then(Value::as_str)
                        .and_then(|r| r.strip_prefix("#/definitions/"))
                    else {
                        continue;
                    };
                    if defs
                        .get(parent)
                        .and_then(|p| p.get("discriminator"))
                        .is_some()
                    {
                        let value = def
                            .get("x-ms-discriminator-value")
                            .and_then(Value::as_str)
                            .unwrap_or(name);
                        subtypes.insert((parent.to_owned(), value.to_owned()), name.clone());
                    }
                }
            }
        }
        Ok(Self {
            docs,
            subtypes,
            regexes: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a discriminator value has a subtype of `base` (e.g. `Compute`, `VirtualMachine`).
    pub fn has_subtype(&self, base: &str, value: &str) -> bool {
        self.subtypes
            .contains_key(&(base.to_owned(), value.to_owned()))
    }

    /// A parameter of the ML document (`#/parameters/NAME`) or of common types.
    pub fn parameter(&self, name: &str) -> Option<&Value> {
        self.docs[ML]
            .pointer(&format!("/parameters/{name}"))
            .or_else(|| self.docs[TYPES].pointer(&format!("/parameters/{name}")))
    }

    /// Does `s` match a spec `pattern`? Patterns that do not compile match everything.
    pub fn matches_pattern(&self, pattern: &str, s: &str) -> bool {
        let re = {
            let mut cache = self
                .regexes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match cache.get(pattern) {
                Some(re) => re.clone(),
                None => {
                    let re = fancy_regex::Regex::new(pattern).ok().map(Arc::new);
                    cache.insert(pattern.to_owned(), re.clone());
                    re
                }
            }
        };
        re.is_none_or(|re| re.is_match(s).unwrap_or(true))
    }

    /// Check a string path/query parameter against a parameter definition's constraints.
    pub fn check_parameter(&self, param: &str, value: &str) -> Result<(), String> {
        let Some(p) = self.parameter(param) else {
            return Ok(());
        };
        let name = p.get("name").and_then(Value::as_str).unwrap_or(param);
        if let Some(min) = p.get("minLength").and_then(Value::as_u64)
            && (value.chars().count() as u64) < min
        {
            return Err(format!(
                "The parameter '{name}' is shorter than {min} characters."
            ));
        }
        if let Some(max) = p.get("maxLength").and_then(Value::as_u64)
            && (value.chars().count() as u64) > max
        {
            return Err(format!(
                "The parameter '{name}' is longer than {max} characters."
            ));
        }
        if let Some(pat) = p.get("pattern").and_then(Value::as_str)
            && !self.matches_pattern(pat, value)
        {
            return Err(format!(
                "The parameter '{name}' with value '{value}' does not match the pattern '{pat}'."
            ));
        }
        Ok(())
    }

    /// Validate `value` against `#/definitions/{definition}` of the ML document.
    pub fn validate_definition(
        &self,
        definition: &str,
        value: &Value,
        opts: Options,
    ) -> Result<(), ValidationError> {
        let Some(schema) = self.docs[ML].pointer(&format!("/definitions/{definition}")) else {
            return Ok(());
        };
        if value.is_null() {
            return Err(err("", "The request body must be a JSON object.".into()));
        }
        self.validate(ML, Some(definition), schema, value, "", false, opts)
    }

    fn resolve<'s, 'r>(
        &'s self,
        doc: usize,
        r: &'r str,
    ) -> Option<(usize, Option<&'r str>, &'s Value)> {
        let (file, frag) = r.split_once('#')?;
        let target = if file.is_empty() {
            doc
        } else if file.ends_with("types.json") {
            TYPES
        } else if file.ends_with("managedidentity.json") {
            MI
        } else {
            return None;
        };
        let name = frag.strip_prefix("/definitions/");
        self.docs[target].pointer(frag).map(|s| (target, name, s))
    }

    fn flatten<'a>(
        &'a self,
        doc: usize,
        name: Option<&str>,
        schema: &'a Value,
        flat: &mut Flat<'a>,
    ) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            if let Some((d, n, s)) = self.resolve(doc, r) {
                self.flatten(d, n, s, flat);
            }
            return;
        }
        if let Some(all_of) = schema.get("allOf").and_then(Value::as_array) {
            for item in all_of {
                self.flatten(doc, None, item, flat);
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                flat.properties.push((k.as_str(), doc, v));
            }
        }
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            flat.required.extend(req.iter().filter_map(Value::as_str));
        }
        if let Some(ap) = schema.get("additionalProperties") {
            flat.additional = Some((doc, ap));
        }
        if let (Some(d), Some(n)) = (schema.get("discriminator").and_then(Value::as_str), name) {
            flat.discriminator = Some((d, n.to_owned()));
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            flat.ty = Some(t);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn validate(
        &self,
        doc: usize,
        name: Option<&str>,
        schema: &Value,
        v: &Value,
        path: &str,
        disc_resolved: bool,
        opts: Options,
    ) -> Result<(), ValidationError> {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            return match self.resolve(doc, r) {
                Some((d, n, s)) => self.validate(d, n, s, v, path, disc_resolved, opts),
                None => Ok(()),
            };
        }
        if v.is_null() {
            return Ok(());
        }
        let mut flat = Flat::default();
        self.flatten(doc, name, schema, &mut flat);

        if let (Some((prop, base)), false, Some(obj)) =
            (&flat.discriminator, disc_resolved, v.as_object())
            && let Some(value) = obj.get(*prop).and_then(Value::as_str)
            && let Some(sub) = self.subtypes.get(&(base.clone(), value.to_owned()))
            && let Some(sub_schema) = self.docs[ML].pointer(&format!("/definitions/{sub}"))
        {
            return self.validate(ML, Some(sub), sub_schema, v, path, true, opts);
        }

        let ty = flat.ty.or(if flat.properties.is_empty() {
            None
        } else {
            Some("object")
        });
        match ty {
            Some("object") => self.validate_object(&flat, v, path, opts)?,
            Some("array") => {
                let Some(items) = v.as_array() else {
                    return Err(type_err(path, "array", v));
                };
                check_count(schema, items.len(), path)?;
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.validate(
                            doc,
                            None,
                            item_schema,
                            item,
                            &format!("{path}[{i}]"),
                            false,
                            opts,
                        )?;
                    }
                }
            }
            Some("string") => {
                let Some(s) = v.as_str() else {
                    return Err(type_err(path, "string", v));
                };
                self.check_string(schema, s, path)?;
            }
            Some("integer") => {
                if !(v.is_i64() || v.is_u64()) {
                    return Err(type_err(path, "integer", v));
                }
                check_integer(schema, v, path)?;
            }
            Some("number") => {
                if !v.is_number() {
                    return Err(type_err(path, "number", v));
                }
                check_range(schema, v.as_f64().unwrap_or(0.0), path)?;
            }
            Some("boolean") => {
                if !v.is_boolean() {
                    return Err(type_err(path, "boolean", v));
                }
            }
            _ => {
                if let Some(s) = v.as_str() {
                    self.check_string(schema, s, path)?;
                }
            }
        }
        Ok(())
    }

    fn validate_object(
        &self,
        flat: &Flat<'_>,
        v: &Value,
        path: &str,
        opts: Options,
    ) -> Result<(), ValidationError> {
        let Some(obj) = v.as_object() else {
            return Err(type_err(path, "object", v));
        };
        let free_form = flat.properties.is_empty() && flat.additional.is_none();
        for (k, val) in obj {
            let child = join(path, k);
            if let Some((_, d, s)) = flat.properties.iter().find(|(n, _, _)| *n == k) {
                self.validate(*d, None, s, val, &child, false, opts)?;
            } else if let Some((d, ap)) = flat.additional {
                match ap {
                    Value::Bool(false) => {
                        return Err(err(
                            &child,
                            format!(
                                "Could not find member '{k}' on object at '{}'.",
                                display(path)
                            ),
                        ));
                    }
                    Value::Object(_) => self.validate(d, None, ap, val, &child, false, opts)?,
                    _ => {}
                }
            } else if opts.reject_unknown && !free_form {
                return Err(err(
                    &child,
                    format!(
                        "Could not find member '{k}' on object at '{}'.",
                        display(path)
                    ),
                ));
            }
        }
        for r in &flat.required {
            if obj.get(*r).is_none_or(Value::is_null) {
                return Err(err(
                    &join(path, r),
                    format!("Required property '{r}' not found in '{}'.", display(path)),
                ));
            }
        }
        Ok(())
    }

    fn check_string(&self, schema: &Value, s: &str, path: &str) -> Result<(), ValidationError> {
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let model_as_string = schema
                .pointer("/x-ms-enum/modelAsString")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            // .NET enum binding is case-insensitive.
            let known = values
                .iter()
                .filter_map(Value::as_str)
                .any(|e| e.eq_ignore_ascii_case(s));
            if !known && !model_as_string {
                let allowed: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
                return Err(err(
                    path,
                    format!(
                        "The value '{s}' of '{}' is not one of the allowed values: {}.",
                        display(path),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            return Err(err(
                path,
                format!(
                    "'{}' must be at least {min} characters long.",
                    display(path)
                ),
            ));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            return Err(err(
                path,
                format!("'{}' must be at most {max} characters long.", display(path)),
            ));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && !self.matches_pattern(p, s)
        {
            return Err(err(
                path,
                format!(
                    "The value '{s}' of '{}' does not match the pattern '{p}'.",
                    display(path)
                ),
            ));
        }
        Ok(())
    }
}

fn err(path: &str, message: String) -> ValidationError {
    ValidationError {
        path: path.to_owned(),
        message,
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_owned()
    } else {
        format!("{path}.{k}")
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_err(path: &str, expected: &str, v: &Value) -> ValidationError {
    let shown = match v {
        Value::String(s) => format!("\"{}\"", s.chars().take(64).collect::<String>()),
        Value::Object(_) | Value::Array(_) => type_name(v).to_owned(),
        other => other.to_string(),
    };
    err(
        path,
        format!(
            "Invalid value {shown} for '{}': expected {expected}, got {}.",
            display(path),
            type_name(v)
        ),
    )
}

fn check_integer(schema: &Value, v: &Value, path: &str) -> Result<(), ValidationError> {
    if schema.get("format").and_then(Value::as_str) == Some("int32") {
        let in_range = v.as_i64().is_some_and(|i| i32::try_from(i).is_ok());
        if !in_range {
            return Err(err(
                path,
                format!(
                    "Value {v} for '{}' is outside the range of int32.",
                    display(path)
                ),
            ));
        }
    }
    check_range(schema, v.as_f64().unwrap_or(0.0), path)
}

fn check_range(schema: &Value, x: f64, path: &str) -> Result<(), ValidationError> {
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && x < min
    {
        return Err(err(
            path,
            format!("'{}' must be at least {min}.", display(path)),
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && x > max
    {
        return Err(err(
            path,
            format!("'{}' must be at most {max}.", display(path)),
        ));
    }
    Ok(())
}

fn check_count(schema: &Value, n: usize, path: &str) -> Result<(), ValidationError> {
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (n as u64) < min
    {
        return Err(err(
            path,
            format!("'{}' must have at least {min} items.", display(path)),
        ));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && (n as u64) > max
    {
        return Err(err(
            path,
            format!("'{}' must have at most {max} items.", display(path)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs() -> Specs {
        Specs::load().unwrap()
    }

    fn check(v: Value) -> Result<(), ValidationError> {
        specs().validate_definition("ComputeResource", &v, Options::default())
    }

    #[test]
    fn accepts_vm_attach() {
        check(json!({"location":"westeurope","properties":{"computeType":"VirtualMachine",
            "resourceId":"/x","properties":{"sshPort":22,"administratorAccount":{"username":"u","password":"p"}}}}))
        .unwrap();
    }

    #[test]
    fn names_the_field_path() {
        let e = check(
            json!({"properties":{"computeType":"VirtualMachine","properties":{"sshPort":"22"}}}),
        )
        .unwrap_err();
        assert_eq!(e.path, "properties.properties.sshPort");
        let e = check(json!({"properties":{"computeType":"VirtualMachine","properties":{"sshPort":3_000_000_000_i64}}})).unwrap_err();
        assert_eq!(e.path, "properties.properties.sshPort");
    }

    #[test]
    fn requires_compute_type() {
        let e = check(json!({"properties":{"resourceId":"/x"}})).unwrap_err();
        assert_eq!(e.path, "properties.computeType");
    }

    #[test]
    fn subtype_properties_are_checked() {
        // AKS: agentCount is an int32 with minimum 0.
        let e = check(json!({"properties":{"computeType":"AKS","properties":{"agentCount":-1}}}))
            .unwrap_err();
        assert_eq!(e.path, "properties.properties.agentCount");
        // Databricks token must be a string.
        let e = check(json!({"properties":{"computeType":"Databricks","properties":{"databricksAccessToken":5}}})).unwrap_err();
        assert_eq!(e.path, "properties.properties.databricksAccessToken");
    }

    #[test]
    fn enums_model_as_string_and_strict() {
        // modelAsString: unknown compute types pass the schema (the handler decides).
        check(json!({"properties":{"computeType":"Batch","resourceId":"/x"}})).unwrap();
        // SkuTier is modelAsString false.
        let e = check(
            json!({"sku":{"name":"S1","tier":"Gold"},"properties":{"computeType":"AmlCompute"}}),
        )
        .unwrap_err();
        assert_eq!(e.path, "sku.tier");
        let e = check(json!({"sku":{"tier":"Free"},"properties":{"computeType":"AmlCompute"}}))
            .unwrap_err();
        assert_eq!(e.path, "sku.name");
    }

    #[test]
    fn unknown_and_read_only_and_null() {
        let v = json!({"id":"x","name":"n","properties":{"computeType":"VirtualMachine","provisioningState":"Succeeded",
            "description":null,"properties":{"administratorAccount":{"username":"u","passphrase":"p"}}}});
        check(v.clone()).unwrap();
        let e = specs()
            .validate_definition(
                "ComputeResource",
                &v,
                Options {
                    reject_unknown: true,
                },
            )
            .unwrap_err();
        assert_eq!(
            e.path,
            "properties.properties.administratorAccount.passphrase"
        );
    }

    #[test]
    fn tags_must_be_strings() {
        let e =
            check(json!({"tags":{"a":1},"properties":{"computeType":"AmlCompute"}})).unwrap_err();
        assert_eq!(e.path, "tags.a");
    }

    #[test]
    fn parameters() {
        let s = specs();
        s.check_parameter("WorkspaceNameParameter", "prod-workspace")
            .unwrap();
        assert!(s.check_parameter("WorkspaceNameParameter", "-bad").is_err());
        s.check_parameter("ResourceGroupNameParameter", "ml-rg")
            .unwrap();
        assert!(s.matches_pattern(COMPUTE_NAME_PATTERN_2026, "vm-one"));
        assert!(!s.matches_pattern(COMPUTE_NAME_PATTERN_2026, "vm-1"));
        assert!(!s.matches_pattern(COMPUTE_NAME_PATTERN_2026, "1vm"));
        assert!(!s.matches_pattern(COMPUTE_NAME_PATTERN_2026, "ab"));
    }
}
