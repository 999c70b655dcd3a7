//! The inventory's query language, in the style of a document database's filters:
//!
//! ```json
//! {"labels.region": {"$in": ["eu", "us"]}, "$or": [{"name": "shop-17"}, {"metadata.tier": {"$exists": true}}]}
//! ```
//!
//! - a key that is a field path (`id`, `name`, `nodes`, `labels.KEY`, `metadata.A.B`)
//!   takes a literal (equality) or an object of operators, all of which must hold:
//!   `$eq`, `$ne`, `$in`, `$nin` (arrays of literals), `$exists` (a boolean);
//! - `$and` and `$or` take a non-empty array of filters;
//! - the keys of one object must all hold (an implicit `$and`); `{}` matches every site;
//! - a field that holds an array (`nodes`) equals a literal when one of its elements does.
//!
//! Anything else (an unknown operator or field, a wrong operand) is refused with
//! `BAD_FILTER` when the filter is parsed, before it is run.

use crate::error::{Error, BAD_FILTER};
use serde_json::{Map, Value};

/// The fields a filter may name; `labels` and `metadata` take sub-paths.
pub const FIELDS: [&str; 5] = ["id", "name", "nodes", "labels", "metadata"];

/// Deepest nesting of `$and` / `$or` taken.
const MAX_DEPTH: usize = 16;
/// Most conditions in one filter.
const MAX_TERMS: usize = 1000;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every one holds (an empty list matches everything).
    And(Vec<Filter>),
    /// At least one holds.
    Or(Vec<Filter>),
    /// A condition on the value at a field path.
    Field {
        /// The path, split at dots: `["labels", "region"]`.
        path: Vec<String>,
        /// What the value must satisfy.
        condition: Condition,
    },
}

/// What a field's value must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Equal to the literal (or an array holding it).
    Eq(Value),
    /// Not [`Condition::Eq`].
    Ne(Value),
    /// Equal to one of the literals.
    In(Vec<Value>),
    /// Equal to none of the literals.
    Nin(Vec<Value>),
    /// The field is present (or absent, with `false`).
    Exists(bool),
}

fn bad(message: impl Into<String>) -> Error {
    Error::new(BAD_FILTER, message)
}

impl Filter {
    /// The filter that matches every site.
    pub fn all() -> Filter {
        Filter::And(Vec::new())
    }

    /// Parses a filter; refuses what the language does not have.
    pub fn parse(value: &Value) -> Result<Filter, Error> {
        let mut terms = 0;
        let filter = parse_object(value, 0, &mut terms)?;
        let literals = filter.literals();
        if terms + literals.len() > MAX_TERMS {
            return Err(bad(format!(
                "a filter takes at most {MAX_TERMS} terms and literals"
            )));
        }
        // No NUL anywhere: no site holds one, and no database takes one in a document.
        let nul = |v: &Value| serde_json::to_string(v).is_ok_and(|t| t.contains("\\u0000"));
        if literals.into_iter().any(nul) || filter.paths().iter().any(|p| p.contains('\0')) {
            return Err(bad("a filter holds a NUL character (\\u0000)"));
        }
        Ok(filter)
    }

    /// Every literal the filter compares with.
    fn literals(&self) -> Vec<&Value> {
        match self {
            Filter::And(all) | Filter::Or(all) => all.iter().flat_map(Filter::literals).collect(),
            Filter::Field { condition, .. } => match condition {
                Condition::Eq(l) | Condition::Ne(l) => vec![l],
                Condition::In(ls) | Condition::Nin(ls) => ls.iter().collect(),
                Condition::Exists(_) => Vec::new(),
            },
        }
    }

    /// Every field path the filter names, dotted.
    fn paths(&self) -> Vec<String> {
        match self {
            Filter::And(all) | Filter::Or(all) => all.iter().flat_map(Filter::paths).collect(),
            Filter::Field { path, .. } => vec![path.join(".")],
        }
    }

    /// Whether `document` (a site as [`crate::Site::document`] gives it) matches.
    pub fn matches(&self, document: &Value) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(document)),
            Filter::Or(any) => any.iter().any(|f| f.matches(document)),
            Filter::Field { path, condition } => {
                let mut value = Some(document);
                for key in path {
                    value = value.and_then(|v| v.get(key.as_str()));
                }
                condition.holds(value)
            }
        }
    }
}

impl Condition {
    fn holds(&self, value: Option<&Value>) -> bool {
        match self {
            Condition::Eq(literal) => equals(value, literal),
            Condition::Ne(literal) => !equals(value, literal),
            Condition::In(literals) => literals.iter().any(|l| equals(value, l)),
            Condition::Nin(literals) => !literals.iter().any(|l| equals(value, l)),
            Condition::Exists(wanted) => value.is_some() == *wanted,
        }
    }
}

/// Equality as document databases have it: an array field equals a literal it holds.
fn equals(value: Option<&Value>, literal: &Value) -> bool {
    match value {
        None => false,
        Some(v) if same(v, literal) => true,
        Some(Value::Array(items)) => items.iter().any(|item| same(item, literal)),
        Some(_) => false,
    }
}

/// JSON values equal as numbers compare (`1` is `1.0`), as the database's do.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn parse_object(value: &Value, depth: usize, terms: &mut usize) -> Result<Filter, Error> {
    if depth > MAX_DEPTH {
        return Err(bad(format!("filters nest deeper than {MAX_DEPTH}")));
    }
    let Value::Object(object) = value else {
        return Err(bad(format!(
            "a filter is an object, not {}",
            kind_of(value)
        )));
    };
    let mut all = Vec::with_capacity(object.len());
    for (key, operand) in object {
        *terms += 1;
        if *terms > MAX_TERMS {
            return Err(bad(format!("a filter takes at most {MAX_TERMS} terms")));
        }
        all.push(match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = operand else {
                    return Err(bad(format!("{key} takes an array of filters")));
                };
                if items.is_empty() {
                    return Err(bad(format!("{key} takes a non-empty array of filters")));
                }
                let parts = items
                    .iter()
                    .map(|i| parse_object(i, depth + 1, terms))
                    .collect::<Result<Vec<_>, _>>()?;
                if key == "$and" {
                    Filter::And(parts)
                } else {
                    Filter::Or(parts)
                }
            }
            k if k.starts_with('$') => {
                return Err(bad(format!(
                    "unknown operator {k:?} at the top of a filter (there: $and, $or)"
                )))
            }
            field => parse_field(field, operand)?,
        });
    }
    Ok(if all.len() == 1 {
        all.pop().unwrap_or_else(Filter::all)
    } else {
        Filter::And(all)
    })
}

fn parse_field(field: &str, operand: &Value) -> Result<Filter, Error> {
    let path: Vec<String> = field.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(bad(format!("field {field:?} has an empty part")));
    }
    let root = path[0].as_str();
    if !FIELDS.contains(&root) {
        return Err(bad(format!(
            "unknown field {field:?} (fields: {}, with labels.KEY and metadata.KEY)",
            FIELDS.join(", ")
        )));
    }
    if path.len() > 1 && !matches!(root, "labels" | "metadata") {
        return Err(bad(format!("field {root:?} has no sub-fields ({field:?})")));
    }
    if root == "labels" && path.len() > 2 {
        return Err(bad(format!("labels are flat: {field:?}")));
    }
    let operators = match operand {
        Value::Object(o) if o.keys().any(|k| k.starts_with('$')) => o,
        literal => {
            return Ok(Filter::Field {
                path,
                condition: Condition::Eq(literal.clone()),
            })
        }
    };
    if operators.keys().any(|k| !k.starts_with('$')) {
        return Err(bad(format!(
            "{field:?}: an object mixes operators and fields"
        )));
    }
    let mut conditions = operators
        .iter()
        .map(|(op, arg)| {
            Ok(Filter::Field {
                path: path.clone(),
                condition: parse_condition(field, op, arg)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(if conditions.len() == 1 {
        conditions.pop().unwrap_or_else(Filter::all)
    } else {
        Filter::And(conditions)
    })
}

fn parse_condition(field: &str, op: &str, arg: &Value) -> Result<Condition, Error> {
    let literals = |arg: &Value| match arg {
        Value::Array(items) => Ok(items.clone()),
        other => Err(bad(format!(
            "{field:?}: {op} takes an array, not {}",
            kind_of(other)
        ))),
    };
    Ok(match op {
        "$eq" => Condition::Eq(arg.clone()),
        "$ne" => Condition::Ne(arg.clone()),
        "$in" => Condition::In(literals(arg)?),
        "$nin" => Condition::Nin(literals(arg)?),
        "$exists" => match arg {
            Value::Bool(b) => Condition::Exists(*b),
            other => {
                return Err(bad(format!(
                    "{field:?}: $exists takes true or false, not {}",
                    kind_of(other)
                )))
            }
        },
        other => {
            return Err(bad(format!(
                "{field:?}: unknown operator {other:?} (operators: $eq, $ne, $in, $nin, $exists)"
            )))
        }
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Applies a JSON merge patch (RFC 7386) to `target`: objects merge key by key, `null`
/// removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}
