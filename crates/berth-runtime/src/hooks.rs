//! OCI lifecycle hooks: run a hook binary with the container state on stdin, honour `timeout`.
