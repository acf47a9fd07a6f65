//! Support for testing rules: the rule fixture format and its runner.

pub mod fixture;
