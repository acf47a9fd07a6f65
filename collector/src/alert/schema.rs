//! The alert record's JSON Schema, made from the record's own types (so it cannot drift from
//! what sinks receive), and the question suppressions ask of it: does a dotted field path
//! name something an alert can have? A matcher on a field no alert has would never match,
//! and the alerts it was meant to hold back would keep coming.

use std::sync::LazyLock;

use serde_json::Value;

use super::Alert;

/// The JSON Schema (draft 2020-12) of the alert record (`kestrel-collector alerts schema`).
pub fn alert_schema() -> &'static Value {
    static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
        serde_json::to_value(schemars::schema_for!(Alert)).expect("a schema is JSON")
    });
    &SCHEMA
}

/// True when the dotted `path` (`process.exe`, `ancestors.exe`, `evidences.data.event.kind`)
/// names a field of the alert record. Arrays are looked through (a matcher tests every
/// element); below a free-form value (the evidence `data`) any path is accepted.
pub fn has_field(path: &str) -> bool {
    let schema = alert_schema();
    let mut nodes = vec![schema];
    for segment in path.split('.') {
        let mut next = Vec::new();
        for node in nodes {
            for object in expand(schema, node) {
                if is_free_form(object) {
                    return true;
                }
                if let Some(field) = object.get("properties").and_then(|p| p.get(segment)) {
                    next.push(field);
                }
            }
        }
        if next.is_empty() {
            return false;
        }
        nodes = next;
    }
    true
}

/// The object schemas `node` stands for: references followed, alternatives (`anyOf`,
/// `oneOf`: an `Option`) and array items opened.
fn expand<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let mut pending = vec![node];
    // Bounded: the alert types nest a handful of levels and refer to no cycle, but the walk
    // must end whatever the schema.
    for _ in 0..64 {
        let Some(node) = pending.pop() else { break };
        if let Some(target) = node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/"))
            .and_then(|r| root.pointer(&format!("/{r}")))
        {
            pending.push(target);
        } else if let Some(items) = node.get("items") {
            pending.push(items);
        } else if let Some(alternatives) = node
            .get("anyOf")
            .or_else(|| node.get("oneOf"))
            .and_then(Value::as_array)
        {
            pending.extend(alternatives);
        } else {
            out.push(node);
        }
    }
    out
}

/// A schema that allows any value (`true`, or `{}` as schemars writes `serde_json::Value`).
fn is_free_form(node: &Value) -> bool {
    match node {
        Value::Bool(allowed) => *allowed,
        Value::Object(map) => map
            .keys()
            .all(|k| matches!(k.as_str(), "description" | "title" | "default")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_the_record_are_found_through_options_arrays_and_references() {
        for path in [
            "host",
            "rule.id",
            "process.exe",
            "process.command_line",
            "ancestors.exe",
            "container.image",
            "container.pod_namespace",
            "event.kind",
            "finding_info.attacks.technique.uid",
            "evidences.process.parent_process.file.path",
            "evidences.data.event.exec.argv",
        ] {
            assert!(has_field(path), "{path}");
        }
    }

    #[test]
    fn fields_no_alert_has_are_refused() {
        for path in [
            "proces.exe",
            "process.exe.name",
            "container.labels",
            "ancestors.parent",
            "Image",
        ] {
            assert!(!has_field(path), "{path}");
        }
    }
}
