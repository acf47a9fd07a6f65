//! Reading rule files: splitting them into YAML documents, and each document (detection
//! rule, correlation rule, filter) with its logsource and condition, into its compiled form.

pub(crate) mod chunk;
pub(crate) mod condition;
pub(crate) mod correlation;
pub(crate) mod document;
pub(crate) mod rule;
