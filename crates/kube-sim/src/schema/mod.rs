//! CRD structural schemas: validation, pruning, defaulting and a CEL subset.
