//! The one place the server reaches into the schema module (CRD structural schemas, name and
//! metadata validation). Everything else imports from here.

pub use crate::schema::{
    CrdSchema, NameRule, coerce_object_meta, default_crd, is_dns1123_label, is_dns1123_subdomain,
    is_qualified_name, is_valid_label_value, prepare_crd_status, validate_crd,
    validate_crd_status_update, validate_object_meta,
};
