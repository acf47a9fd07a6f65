//! Compiling detection sections: selections and their field modifiers, value patterns
//! (wildcards, regexes, numbers, CIDRs, times), and the literal prefilter that picks candidate
//! rules.

pub(crate) mod modifiers;
pub(crate) mod pattern;
pub(crate) mod prefilter;
pub(crate) mod regex_flags;
pub(crate) mod regex_literals;
pub(crate) mod selection;
