//! Sigma detection: loading rules from a directory, compiling them, matching events, and
//! correlating matches over time.
//!
//! - [`RuleSet`]: the compiled rules of a directory: detection rules routed by logsource
//!   category ([`Category`]), Sigma filters applied to the rules they name, and correlation
//!   rules linked to the rules they reference. Rules are compiled once: field lookups resolved
//!   through the one mapping table in `fields`, literals lowercased, wildcard and regex
//!   matchers built, and per category one literal prefilter (Aho-Corasick per field) that
//!   picks the few rules worth evaluating on an event.
//! - [`Detector`]: applies a rule set to a stream of events, with correlation state and the
//!   process sessions it learns; returns [`Detection`]s. Follows [`SharedRules`] for hot reload.
//!
//! Invalid rules are reported as [`RuleError`]s (file, line, reason) so callers can log and
//! skip them; the other rules still load.

mod calendar;
mod compile;
mod detection;
mod error;
mod fields;
mod logsource;
mod lowercase;
mod parse;
mod rule_set;
mod runtime;
mod testing;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_correlation;

pub use detection::{Detection, RuleInfo, RuleKind};
pub use error::{LoadError, RuleError, RuleErrorKind};
pub use fields::sigma_json;
pub use logsource::{categories_of, Category, CategorySet, CATEGORIES};
pub use parse::correlation::{Correlation, CorrelationType};
pub use parse::rule::Rule;
pub use rule_set::files::{rule_files, FIXTURES_DIR, MAX_RULE_FILE_BYTES};
pub use rule_set::RuleSet;
pub use runtime::correlator::{CorrelationLimits, CorrelationStats};
pub use runtime::detector::{Detector, DetectorStats, SharedRules};
pub use runtime::sessions::{SessionStats, DEFAULT_CAPACITY as DEFAULT_SESSION_CAPACITY};
pub use testing::fixture;
