//! `features`: what this runtime really supports (runtime-spec features.md).

use serde_json::{json, Value};

/// The features document. Only what works is listed.
pub fn features() -> Value {
    let mut doc = base();
    let security = serde_json::to_value(crate::security::features()).expect("features serialize");
    if let (Some(linux), Value::Object(sec)) = (doc["linux"].as_object_mut(), security) {
        linux.extend(sec);
    }
    doc
}

fn base() -> Value {
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro",
            "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "slave",
            "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": false,
                "systemdUser": false
            }
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.version": "1.2.0",
            "io.github.berth.version": env!("CARGO_PKG_VERSION")
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_merge_security_into_linux() {
        let f = super::features();
        assert!(f["linux"]["namespaces"].as_array().unwrap().len() == 8);
        assert!(f["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN"));
        assert!(f["linux"]["seccomp"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "SCMP_ACT_ERRNO"));
        assert!(f["linux"]["apparmor"]["enabled"].is_boolean());
    }
}
