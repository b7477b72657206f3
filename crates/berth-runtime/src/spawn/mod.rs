//! Spawning a container process: the plan computed before cloning, the parent's side of the
//! handshake, and the init's side.
