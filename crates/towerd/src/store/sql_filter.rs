//! A filter of the inventory's language ([`site_fleet::Filter`]) as a SQL condition on
//! the `record` (jsonb) column of `sites`, with its parameters, so that PostgreSQL
//! selects the sites (from the `jsonb_path_ops` index where it can) instead of towerd
//! loading every one.
//!
//! The meaning is the language's ([`Filter::matches`]), case by case:
//! - equality to a scalar is containment: `record @> {"labels":{"region":"eu"}}`, or of a
//!   one-element array for a field that holds an array (`nodes`), both indexed;
//! - equality to an array or an object is exact (`=` on the value, or on an element of
//!   an array value): containment would also match a value holding more;
//! - values are reached with `->` and text keys only, which never index into an array
//!   (the language's paths name object keys);
//! - `$ne` and `$nin` are the negations of the others (a missing field differs from any
//!   literal), `$exists` is whether the path reaches a value (JSON `null` included).

use serde_json::{Map, Value};
use site_fleet::filter::Condition;
use site_fleet::Filter;
use tokio_postgres::types::ToSql;

/// A condition and its parameters (`$1`, `$2`, ... in the order given).
#[derive(Default)]
pub struct Sql {
    /// The condition.
    pub text: String,
    /// Its parameters.
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Sql {
    /// The condition `filter` stands for.
    pub fn of(filter: &Filter) -> Sql {
        let mut sql = Sql::default();
        sql.text = sql.filter(filter);
        sql
    }

    /// Parameters as tokio-postgres takes them.
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    fn param(&mut self, value: impl ToSql + Sync + Send + 'static, cast: &str) -> String {
        self.params.push(Box::new(value));
        format!("${}::{cast}", self.params.len())
    }

    fn filter(&mut self, filter: &Filter) -> String {
        match filter {
            Filter::And(all) if all.is_empty() => "TRUE".into(),
            Filter::Or(any) if any.is_empty() => "FALSE".into(),
            Filter::And(all) => self.join(all, " AND "),
            Filter::Or(any) => self.join(any, " OR "),
            Filter::Field { path, condition } => self.condition(path, condition),
        }
    }

    fn join(&mut self, parts: &[Filter], with: &str) -> String {
        let parts: Vec<String> = parts.iter().map(|f| self.filter(f)).collect();
        format!("({})", parts.join(with))
    }

    fn condition(&mut self, path: &[String], condition: &Condition) -> String {
        match condition {
            Condition::Eq(literal) => self.equals(path, literal),
            Condition::Ne(literal) => format!("NOT {}", self.equals(path, literal)),
            Condition::In(literals) => self.any(path, literals),
            Condition::Nin(literals) => format!("NOT {}", self.any(path, literals)),
            Condition::Exists(wanted) => {
                let value = self.value(path);
                let is = if *wanted { "IS NOT NULL" } else { "IS NULL" };
                format!("({value} {is})")
            }
        }
    }

    fn any(&mut self, path: &[String], literals: &[Value]) -> String {
        if literals.is_empty() {
            return "FALSE".into();
        }
        let parts: Vec<String> = literals.iter().map(|l| self.equals(path, l)).collect();
        format!("({})", parts.join(" OR "))
    }

    /// The value at `path`, SQL NULL where the path leads nowhere.
    fn value(&mut self, path: &[String]) -> String {
        let mut out = String::from("record");
        for key in path {
            let p = self.param(key.clone(), "text");
            out.push_str(&format!(" -> {p}"));
        }
        out
    }

    /// Never NULL: true or false.
    fn equals(&mut self, path: &[String], literal: &Value) -> String {
        if matches!(literal, Value::Array(_) | Value::Object(_)) {
            let value = self.value(path);
            let lit = self.param(literal.clone(), "jsonb");
            let value_again = self.value(path);
            let lit_again = self.param(literal.clone(), "jsonb");
            return format!(
                "COALESCE({value} = {lit} OR CASE WHEN jsonb_typeof({value_again}) = 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({value_again}) e WHERE e = {lit_again}) ELSE FALSE END, FALSE)"
            );
        }
        let whole = self.param(nest(path, literal.clone()), "jsonb");
        let element = self.param(nest(path, Value::Array(vec![literal.clone()])), "jsonb");
        format!("(record @> {whole} OR record @> {element})")
    }
}

/// `{"a": {"b": value}}` for the path `a.b`.
fn nest(path: &[String], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        let mut m = Map::new();
        m.insert(key.clone(), inner);
        Value::Object(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_are_containment_and_composites_exact() {
        let f = Filter::parse(&json!({"labels.region": "eu", "nodes": {"$nin": []}})).unwrap();
        let sql = Sql::of(&f);
        assert_eq!(
            sql.text,
            "((record @> $1::jsonb OR record @> $2::jsonb) AND NOT FALSE)"
        );
        assert_eq!(sql.params.len(), 2);
        let f = Filter::parse(&json!({"metadata.rack": {"$eq": {"row": 1}}})).unwrap();
        let sql = Sql::of(&f);
        assert!(sql
            .text
            .starts_with("COALESCE(record -> $1::text -> $2::text = $3::jsonb"));
        let f = Filter::parse(&json!({"metadata.rack": {"$exists": false}})).unwrap();
        assert_eq!(Sql::of(&f).text, "(record -> $1::text -> $2::text IS NULL)");
    }
}
