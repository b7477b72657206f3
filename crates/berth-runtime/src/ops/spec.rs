//! `spec`: the default `config.json` (runc's defaults), optionally for rootless use.

use oci_spec::runtime::{
    LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, Spec,
};

const DEFAULT: &str = include_str!("../../data/default-config.json");

/// The default spec. With `rootless`, the one an unprivileged user can run: a user namespace
/// mapping the caller's ids to root, no network namespace, no device cgroup rules, `/sys`
/// bind-mounted, and devpts without `gid=5` (which an unmapped group cannot own).
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec = default_spec_without_seccomp(rootless);
    // Docker's default seccomp profile, resolved for the spec's bounding capabilities.
    let caps: Vec<String> = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .map(|b| b.iter().map(|c| format!("CAP_{c}")).collect())
        .unwrap_or_default();
    let seccomp = crate::security::seccomp::default_seccomp_for_caps(&caps)
        .expect("the built-in seccomp profile resolves");
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(Some(seccomp));
    }
    spec
}

/// [`default_spec`] without its seccomp profile, for a caller that sets its own (the engine
/// resolves Docker's profile for each container's capabilities): resolving it is most of the
/// cost of the default spec.
pub fn default_spec_without_seccomp(rootless: bool) -> Spec {
    let mut spec: Spec = serde_json::from_str(DEFAULT).expect("built-in default spec parses");
    if !rootless {
        return spec;
    }
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    if let Some(linux) = spec.linux_mut() {
        let mut namespaces: Vec<_> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|ns| ns.typ() != LinuxNamespaceType::Network)
            .collect();
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .build()
                .expect("namespace builds"),
        );
        linux.set_namespaces(Some(namespaces));
        let map = |host: u32| {
            vec![LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host)
                .size(1u32)
                .build()
                .expect("mapping builds")]
        };
        linux.set_uid_mappings(Some(map(uid)));
        linux.set_gid_mappings(Some(map(gid)));
        linux.set_resources(None);
    }
    let mounts: Vec<Mount> = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|mut m| {
            if m.destination().as_os_str() == "/dev/pts" {
                let opts = m
                    .options()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| o != "gid=5")
                    .collect();
                m.set_options(Some(opts));
            }
            if m.destination().as_os_str() == "/sys" {
                m.set_typ(Some("none".into()));
                m.set_source(Some("/sys".into()));
                m.set_options(Some(
                    ["rbind", "nosuid", "noexec", "nodev", "ro"]
                        .map(String::from)
                        .to_vec(),
                ));
            }
            m
        })
        .collect();
    spec.set_mounts(Some(mounts));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_has_the_docker_seccomp_profile() {
        let s = default_spec(false);
        let sc = s.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
        assert!(sc.syscalls().as_ref().unwrap().len() > 10);
        let json = serde_json::to_string(sc).unwrap();
        assert!(json.contains("\"read\""));
        assert!(!json.contains("\"kexec_load\""));
    }

    #[test]
    fn default_is_runc_like() {
        let s = default_spec(false);
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &vec!["sh".to_string()]);
        assert_eq!(s.root().as_ref().unwrap().path().to_str(), Some("rootfs"));
        let ns = s.linux().as_ref().unwrap().namespaces().as_ref().unwrap();
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    }

    #[test]
    fn rootless_has_user_namespace_and_no_network() {
        let s = default_spec(true);
        let linux = s.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert_eq!(linux.uid_mappings().as_ref().unwrap().len(), 1);
        let sys = s
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination().as_os_str() == "/sys")
            .unwrap();
        assert!(sys
            .options()
            .as_ref()
            .unwrap()
            .contains(&"rbind".to_string()));
    }
}
