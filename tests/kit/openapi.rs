//! Live answers checked against the OpenAPI document a server serves: the answer of
//! `METHOD path` with its status must be documented, and its JSON must match the
//! schema documented for it. A small validator of the JSON Schema that OpenAPI 3.1
//! documents use (`$ref`, `allOf`, `oneOf`, `anyOf`, `type` and type lists, `enum`,
//! `required`, `properties`, `additionalProperties`, `items`, `minimum`), strict in
//! one way: an object with documented properties may hold no undocumented one.

use serde_json::Value;

/// An OpenAPI document.
pub struct Spec {
    doc: Value,
}

impl Spec {
    /// The document.
    pub fn new(doc: Value) -> Spec {
        assert_eq!(doc["openapi"], "3.1.0", "an OpenAPI 3.1 document");
        Spec { doc }
    }

    /// The `(METHOD, path template)` of every operation.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
        out.sort();
        out
    }

    /// The template of the documented path `path` matches (query left aside).
    fn template(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let parts: Vec<&str> = path.split('/').collect();
        self.doc["paths"]
            .as_object()?
            .keys()
            .filter(|t| {
                let tparts: Vec<&str> = t.split('/').collect();
                tparts.len() == parts.len()
                    && tparts
                        .iter()
                        .zip(&parts)
                        .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
            })
            // A literal segment wins over a parameter (`/sites/query` over `/sites/{id}`).
            .max_by_key(|t| t.matches('{').count() == 0)
            .cloned()
    }

    /// Checks the JSON answer `body` of `METHOD path` with `status`.
    pub fn check(&self, method: &str, path: &str, status: u16, body: &Value) -> Result<(), String> {
        let template = self
            .template(path)
            .ok_or_else(|| format!("{path} is not documented"))?;
        let op = &self.doc["paths"][&template][method.to_lowercase()];
        if op.is_null() {
            return Err(format!("{method} {template} is not documented"));
        }
        let response = &op["responses"][status.to_string()];
        if response.is_null() {
            return Err(format!(
                "status {status} of {method} {template} is not documented"
            ));
        }
        if response["description"].as_str().is_none_or(str::is_empty) {
            return Err(format!(
                "status {status} of {method} {template} has no description"
            ));
        }
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            return Err(format!(
                "{method} {template} {status}: no JSON schema documented"
            ));
        }
        self.validate(schema, body, "$", true)
            .map_err(|e| format!("{method} {path} {status}: {e}"))
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("a $ref outside the components: {r}"));
                let target = &self.doc["components"]["schemas"][name];
                assert!(!target.is_null(), "$ref to a missing schema {name}");
                self.resolve(target)
            }
            None => schema,
        }
    }

    /// The property names `schema` documents (through `$ref` and `allOf`).
    fn documented(&self, schema: &Value) -> Option<Vec<String>> {
        let schema = self.resolve(schema);
        if let Some(parts) = schema["allOf"].as_array() {
            let mut all = Vec::new();
            for p in parts {
                all.extend(self.documented(p)?);
            }
            return Some(all);
        }
        if schema
            .get("additionalProperties")
            .is_some_and(|a| a != false)
        {
            return None;
        }
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
    }

    fn validate(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        strict: bool,
    ) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(parts) = schema["allOf"].as_array() {
            for p in parts {
                self.validate(p, value, at, false)?;
            }
            if let (true, Some(known), Some(object)) =
                (strict, self.documented(schema), value.as_object())
            {
                if let Some(extra) = object.keys().find(|k| !known.contains(k)) {
                    return Err(format!("{at}.{extra} is not documented"));
                }
            }
            return Ok(());
        }
        if let Some(choices) = schema["oneOf"].as_array() {
            let fits = choices
                .iter()
                .filter(|c| self.validate(c, value, at, strict).is_ok())
                .count();
            return match fits {
                1 => Ok(()),
                0 => Err(format!("{at} fits none of its oneOf: {value}")),
                _ => Err(format!("{at} fits several of its oneOf: {value}")),
            };
        }
        if let Some(choices) = schema["anyOf"].as_array() {
            return if choices
                .iter()
                .any(|c| self.validate(c, value, at, strict).is_ok())
            {
                Ok(())
            } else {
                Err(format!("{at} fits none of its anyOf: {value}"))
            };
        }
        if let Some(types) = match &schema["type"] {
            Value::String(t) => Some(vec![t.as_str()]),
            Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
            _ => None,
        } {
            let ok = types.iter().any(|t| match *t {
                "null" => value.is_null(),
                "boolean" => value.is_boolean(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "number" => value.is_number(),
                "integer" => value.is_i64() || value.is_u64(),
                other => panic!("unknown type {other}"),
            });
            if !ok {
                return Err(format!("{at} is not {types:?}: {value}"));
            }
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                return Err(format!("{at} = {value} is not one of {allowed:?}"));
            }
        }
        if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
            if n < min {
                return Err(format!("{at} = {n} is below {min}"));
            }
        }
        if let Some(object) = value.as_object() {
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap_or_default();
                if !object.contains_key(r) {
                    return Err(format!("{at}.{r} is required"));
                }
            }
            let properties = schema["properties"].as_object();
            for (k, v) in object {
                match properties.and_then(|p| p.get(k)) {
                    Some(s) => self.validate(s, v, &format!("{at}.{k}"), true)?,
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => return Err(format!("{at}.{k} is not allowed")),
                        Some(Value::Bool(true)) => {}
                        Some(extra) => self.validate(extra, v, &format!("{at}.{k}"), true)?,
                        None if strict && properties.is_some() => {
                            return Err(format!("{at}.{k} is not documented"))
                        }
                        None => {}
                    },
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, v) in array.iter().enumerate() {
                self.validate(items, v, &format!("{at}[{i}]"), true)?;
            }
        }
        Ok(())
    }
}
