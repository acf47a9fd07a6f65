//! Applying a rule set to an event stream: the detector, the correlation state, and the
//! process sessions it learns.

pub(crate) mod correlator;
pub(crate) mod detector;
pub(crate) mod sessions;
