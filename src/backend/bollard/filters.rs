//! Label filters as the engine's list calls take them.

use std::collections::HashMap;

use crate::naming::codec::Filter;

/// `label_filters`, all of which must match, as the `filters` of a list call.
pub fn label_filter(label_filters: &[Filter]) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([(
        "label",
        label_filters.iter().map(Filter::to_docker).collect(),
    )])
}
