//! OCI distribution client (written by the registry work item).
