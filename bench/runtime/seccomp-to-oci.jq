# seccomp-to-oci.jq - turn a Docker/moby-format seccomp profile into an OCI `linux.seccomp` object.
#
# Usage: jq --argjson caps '["CAP_CHOWN",...]' --arg arch amd64 -f seccomp-to-oci.jq PROFILE.json
#
# Docker's format (moby profiles/seccomp/default.json, containers-common seccomp.json) guards rules with
# `includes`/`excludes` on capabilities and Go architecture names; the engine resolves them for the
# container's capability set before handing an OCI profile to the runtime. We do the same here, with the
# rules of moby's profiles/seccomp/seccomp_linux.go: a rule is kept when ALL its `includes.caps` are in
# the set, ANY of its `includes.arches` is the native arch, NONE of its `excludes.caps` is in the set and
# the arch is not in `excludes.arches`. `minKernel` is ignored (the host kernel is 6.x, newer than any).
# A profile already in OCI form (no includes/excludes, `architectures` set) passes through unchanged.
def kept($caps; $arch):
  ((.includes.caps // []) | all(. as $c | any($caps[]; . == $c)))
  and ((.includes.arches // []) | (length == 0) or any(. == $arch))
  and ((.excludes.caps // []) | any(. as $c | any($caps[]; . == $c)) | not)
  and ((.excludes.arches // []) | any(. == $arch) | not);

def oci_arg:
  {index, value, op} + (if (.valueTwo // 0) != 0 then {valueTwo} else {} end);

{
  defaultAction: .defaultAction,
  defaultErrnoRet: (.defaultErrnoRet // null),
  architectures: (
    if .architectures then .architectures
    else [.archMap[]? | select(.architecture == "SCMP_ARCH_X86_64") | .architecture, .subArchitectures[]?]
    end),
  syscalls: [
    .syscalls[] | select(kept($caps; $arch))
    | {names, action}
      + (if .errnoRet != null then {errnoRet} else {} end)
      + (if ((.args // []) | length) > 0 then {args: [.args[] | oci_arg]} else {} end)
  ]
}
| with_entries(select(.value != null))
