//! The field values of the current event, as matchers read them.

use kestrel_proto::Event;

use super::catalogue::{Field, FIELD_COUNT};
use super::extract::{compute, EventContext};
use crate::lowercase::{lowercase_into, needs_lowercasing};

/// One field value as seen by matchers: the original text and its lowercase form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Value<'v> {
    /// The value as recorded.
    pub(crate) raw: &'v str,
    /// `raw` lowercased (see [`lowercase_into`]), for case-insensitive matching.
    pub(crate) lower: &'v str,
}

#[derive(Debug, Default)]
struct Slot {
    /// Serial of the event these buffers hold, 0 for none.
    serial: u64,
    present: bool,
    raw: String,
    lower: String,
    /// `lower` is not filled because lowercasing does not change `raw`.
    lower_is_raw: bool,
}

/// Field values of the current event, in buffers reused from event to event so that filling
/// them allocates nothing once warmed up. Start an event with [`FieldValues::load`], compute
/// the fields rules read with [`FieldValues::fill`], then read them with [`FieldValues::get`].
#[derive(Debug)]
pub(crate) struct FieldValues {
    slots: Vec<Slot>,
    serial: u64,
}

impl Default for FieldValues {
    fn default() -> FieldValues {
        FieldValues {
            slots: (0..FIELD_COUNT).map(|_| Slot::default()).collect(),
            serial: 0,
        }
    }
}

impl FieldValues {
    /// Starts a new event: every value from the previous one becomes unset.
    pub(crate) fn load(&mut self) {
        self.serial += 1;
    }

    /// Computes `fields` of `event` that this event has not computed yet.
    pub(crate) fn fill(&mut self, event: &Event, ctx: &EventContext<'_>, fields: &[Field]) {
        // Most calls find every field already computed (each candidate rule fills its own):
        // only this check is inline, so that the setup `compute` needs is not paid per call.
        for &field in fields {
            if self.slots[field.index()].serial != self.serial {
                self.fill_one(field, event, ctx);
            }
        }
    }

    #[inline(never)]
    fn fill_one(&mut self, field: Field, event: &Event, ctx: &EventContext<'_>) {
        let slot = &mut self.slots[field.index()];
        slot.serial = self.serial;
        slot.raw.clear();
        slot.present = compute(field, event, ctx, &mut slot.raw);
        slot.lower_is_raw = !needs_lowercasing(&slot.raw);
        if !slot.lower_is_raw {
            slot.lower.clear();
            lowercase_into(&slot.raw, &mut slot.lower);
        }
    }

    /// The value of `field` for the current event, `None` when the event does not carry it (or
    /// it was not filled: callers fill every field their rules read).
    pub(crate) fn get(&self, field: Field) -> Option<Value<'_>> {
        let slot = &self.slots[field.index()];
        debug_assert!(
            slot.serial == self.serial,
            "field {} read but not filled",
            field.name()
        );
        if slot.serial != self.serial || !slot.present {
            return None;
        }
        let lower = if slot.lower_is_raw {
            &slot.raw
        } else {
            &slot.lower
        };
        Some(Value {
            raw: &slot.raw,
            lower,
        })
    }
}
