//! The event as the flat JSON object of Sigma fields that rules see.

use kestrel_proto::Event;

use super::catalogue::{Field, FieldKind, FIELDS};
use super::extract::EventContext;
use super::values::FieldValues;

/// The event as a flat JSON object of the Sigma fields it carries (numbers and booleans
/// typed), as rules see it: for debugging rules, exporting events to other Sigma tools, and the
/// benchmark against another engine.
pub fn sigma_json(
    event: &Event,
    session: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value as J;
    let categories = crate::logsource::categories_of(event);
    let mut values = FieldValues::default();
    values.load();
    let fields: Vec<Field> = FIELDS
        .iter()
        .filter(|d| d.categories.0 & categories.0 != 0)
        .map(|d| d.field)
        .collect();
    values.fill(event, &EventContext { session }, &fields);
    let mut out = serde_json::Map::new();
    for field in fields {
        let Some(v) = values.get(field) else { continue };
        let json = match field.kind() {
            FieldKind::Number => v
                .raw
                .parse::<i64>()
                .map(J::from)
                .unwrap_or_else(|_| J::from(v.raw)),
            FieldKind::Bool => J::Bool(v.raw == "true"),
            _ => J::from(v.raw),
        };
        out.insert(field.name().to_string(), json);
    }
    out
}
