//! `state` and `list`.

use super::Runtime;
use crate::state::{self, OciState, StateError};

/// The OCI state of container `id`.
pub fn state(rt: &Runtime, id: &str) -> Result<OciState, StateError> {
    let (dir, st, _) = rt.load(id)?;
    Ok(st.oci_state(&dir))
}

/// The state of every container under the root, sorted by id. Entries whose state cannot be
/// read are skipped (a create may be writing them).
pub fn list(rt: &Runtime) -> Result<Vec<OciState>, StateError> {
    let mut out = Vec::new();
    for id in state::list_ids(rt.root())? {
        if let Ok(s) = state(rt, &id) {
            out.push(s);
        }
    }
    Ok(out)
}
