//! Per-container state under the runtime root: `state.json` (written atomically), a lock file
//! for every mutating operation, and the `exec.fifo` that holds a created container's init.
