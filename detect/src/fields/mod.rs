//! Sigma fields: the one mapping table from Sigma field names to event data ([`FIELDS`]), and
//! the per-event field values that every rule reads (computed once per event into reused
//! buffers).
//!
//! Names follow Sigma and Sysmon for Linux (`Image`, `CommandLine`, `TargetFilename`,
//! `DestinationIp`, …); Kestrel's own fields for the event kinds Sysmon does not have use the same
//! style. Each field says in which categories it exists: a rule reading a field its category
//! does not produce is rejected at load, never silently accepted as matching nothing.
//!
//! - `catalogue`: the table (names, value kinds, categories) and the fields Kestrel does not
//!   produce.
//! - `values`: the per-event value buffers rules read.
//! - `extract`: how each field's value is written from an event and its payload.
//! - `words`: the names shown for kernel numbers (operations, capabilities, signals, ...).
//! - `sigma_json`: the event as the flat object of fields rules see.

mod catalogue;
mod extract;
mod sigma_json;
mod values;
mod words;

#[cfg(test)]
mod tests;

pub(crate) use catalogue::{Field, FieldKind, FIELDS, NOT_PRODUCED};
pub(crate) use extract::EventContext;
pub use sigma_json::sigma_json;
pub(crate) use values::{FieldValues, Value};
