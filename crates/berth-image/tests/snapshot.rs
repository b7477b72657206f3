//! Privileged tests of overlay and copy snapshots over layers extracted by berth-image.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_image::digest::{chain_ids, Digest};
use berth_image::extract::{extract_tar, ExtractOptions};
use berth_image::manifest::Platform;
use berth_image::snapshot::{SnapshotKind, Snapshotter};
use berth_image::store::{ImageRecord, LayerMeta, LayerRecord, Store, StoreError};

fn root_or_skip() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!("skipping: needs root");
    false
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
        } else {
            h.set_mode(0o644);
        }
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Puts an image made of `layers` (uncompressed tars) into the store, as a pull would.
fn add_image(store: &Store, name: &str, layers: &[Vec<u8>]) -> ImageRecord {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let chains = chain_ids(&diff_ids);
    let mut recs = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        if !store.has_layer(&chains[i]) {
            let tmp = store.begin_layer(&chains[i]).unwrap();
            let st = extract_tar(&l[..], &tmp.join("diff"), &ExtractOptions::default()).unwrap();
            let meta = LayerMeta {
                diff_id: diff_ids[i].clone(),
                size: st.bytes,
            };
            store.commit_layer(&tmp, &chains[i], &meta).unwrap();
        }
        let d = store.put_blob(l, None).unwrap();
        recs.push(LayerRecord {
            digest: d,
            diff_id: diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            size: l.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        });
    }
    let config = format!(r#"{{"os":"linux","architecture":"amd64","n":"{name}"}}"#);
    let id = store.put_blob(config.as_bytes(), None).unwrap();
    let manifest = store
        .put_blob(format!("{{\"m\":\"{name}\"}}").as_bytes(), None)
        .unwrap();
    let rec = ImageRecord {
        id,
        manifest_digest: manifest,
        manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        repo_digests: vec![],
        layers: recs,
        platform: Platform::host(),
        created: None,
    };
    store
        .put_image(&rec, &[format!("docker.io/library/{name}:latest")])
        .unwrap();
    rec
}

fn mounted(target: &Path) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let t = target.to_str().unwrap();
    mi.lines().any(|l| l.split(' ').nth(4) == Some(t))
}

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
struct MountGuard(PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

fn base_and_whiteouts() -> Vec<Vec<u8>> {
    vec![
        tar_of(&[
            ("etc/", b""),
            ("etc/motd", b"hello"),
            ("etc/keep", b"keep"),
            ("cache/", b""),
            ("cache/old", b"old"),
        ]),
        tar_of(&[
            ("etc/", b""),
            ("etc/.wh.motd", b""),
            ("cache/", b""),
            ("cache/.wh..wh..opq", b""),
            ("cache/new", b"new"),
        ]),
    ]
}

fn check_view(root: &Path) {
    assert_eq!(std::fs::read(root.join("etc/keep")).unwrap(), b"keep");
    assert!(
        !root.join("etc/motd").exists(),
        "whiteout did not hide etc/motd"
    );
    assert!(
        !root.join("cache/old").exists(),
        "opaque dir did not hide cache/old"
    );
    assert_eq!(std::fs::read(root.join("cache/new")).unwrap(), b"new");
}

#[test]
fn overlay_snapshot_lifecycle() {
    if !root_or_skip() || !Snapshotter::overlay_supported() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    let rec = add_image(&store, "wh", &base_and_whiteouts());
    let snaps = Snapshotter::new(store.clone());
    let s = snaps
        .create("c1", &rec, Some(SnapshotKind::Overlay))
        .unwrap();
    assert_eq!(s.lowerdirs.len(), 2);
    assert!(s.lowerdirs[0].ends_with(format!("{}/diff", rec.layers[1].chain_id.hex())));
    assert!(matches!(
        snaps.create("c1", &rec, None),
        Err(berth_image::snapshot::SnapshotError::Exists { .. })
    ));
    assert!(snaps.create("../escape", &rec, None).is_err());

    let target = dir.path().join("merged");
    std::fs::create_dir(&target).unwrap();
    {
        let _g = MountGuard(target.clone());
        snaps.mount("c1", &target).unwrap();
        assert!(mounted(&target), "overlay is not mounted");
        check_view(&target);
        let mut f = std::fs::File::create(target.join("etc/written")).unwrap();
        f.write_all(b"upper").unwrap();
        drop(f);
        snaps.unmount(&target).unwrap();
        assert!(!mounted(&target));
        snaps.unmount(&target).unwrap(); // idempotent
    }
    assert_eq!(
        std::fs::read(s.upper.join("etc/written")).unwrap(),
        b"upper"
    );
    // The layers themselves are untouched.
    assert!(!store
        .layer_diff(&rec.layers[0].chain_id)
        .join("etc/written")
        .exists());

    // In use: rmi refuses, and gc keeps the layers even with -f.
    let err = store.remove_image("wh", false).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    store.remove_image("wh", true).unwrap();
    store.gc().unwrap();
    assert!(store.has_layer(&rec.layers[1].chain_id));
    snaps.remove("c1").unwrap();
    snaps.remove("c1").unwrap(); // idempotent
    store.gc().unwrap();
    assert!(!store.has_layer(&rec.layers[1].chain_id));
}

#[test]
fn overlay_with_more_layers_than_one_page_of_mount_data() {
    if !root_or_skip() || !Snapshotter::overlay_supported() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    // 60 layers of ~110-byte paths: well over the 4096-byte mount(2) data page.
    let layers: Vec<Vec<u8>> = (0..60)
        .map(|i| tar_of(&[(format!("f{i}").as_str(), format!("{i}").as_bytes())]))
        .collect();
    let rec = add_image(&store, "many", &layers);
    let snaps = Snapshotter::new(store.clone());
    let s = snaps
        .create("many", &rec, Some(SnapshotKind::Overlay))
        .unwrap();
    let total: usize = s.lowerdirs.iter().map(|p| p.as_os_str().len() + 1).sum();
    assert!(total > 4096, "test does not exceed the page: {total}");
    let target = dir.path().join("merged");
    std::fs::create_dir(&target).unwrap();
    {
        let _g = MountGuard(target.clone());
        snaps.mount("many", &target).unwrap();
        for i in [0, 30, 59] {
            assert_eq!(
                std::fs::read_to_string(target.join(format!("f{i}"))).unwrap(),
                i.to_string()
            );
        }
        snaps.unmount(&target).unwrap();
    }
    assert!(!mounted(&target));
    snaps.remove("many").unwrap();
}

#[test]
fn copy_fallback_applies_whiteouts() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    let rec = add_image(&store, "wh", &base_and_whiteouts());
    let snaps = Snapshotter::new(store.clone());
    let s = snaps
        .create("copy1", &rec, Some(SnapshotKind::Copy))
        .unwrap();
    check_view(&s.rootfs);
    let target = dir.path().join("merged");
    std::fs::create_dir(&target).unwrap();
    {
        let _g = MountGuard(target.clone());
        snaps.mount("copy1", &target).unwrap();
        check_view(&target);
        snaps.unmount(&target).unwrap();
    }
    assert!(!mounted(&target));
    snaps.remove("copy1").unwrap();
    assert!(!s.rootfs.exists());
}

/// The mount options of the mount at `target`, from /proc/self/mountinfo.
fn super_options(target: &Path) -> String {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let t = target.to_str().unwrap();
    mi.lines()
        .find(|l| l.split(' ').nth(4) == Some(t))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn volatile_snapshots_remount_in_the_same_boot_and_reset_after_another() {
    if !root_or_skip() || !Snapshotter::overlay_supported() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    let rec = add_image(&store, "vol", &base_and_whiteouts());
    let snaps = Snapshotter::new(store.clone());
    let s = snaps
        .create_with("v1", &rec, Some(SnapshotKind::Overlay), true)
        .unwrap();
    assert!(s.volatile);
    // A plain snapshot is not volatile.
    let plain = snaps.create("p1", &rec, None).unwrap();
    assert!(!plain.volatile);

    let target = dir.path().join("merged");
    std::fs::create_dir(&target).unwrap();
    let _g = MountGuard(target.clone());
    snaps.mount("v1", &target).unwrap();
    assert!(
        super_options(&target).contains("volatile"),
        "{}",
        super_options(&target)
    );
    std::fs::write(target.join("etc/written"), b"upper").unwrap();
    snaps.unmount(&target).unwrap();
    // The kernel's marker refuses a second mount unless Berth clears it: same boot, kept.
    assert!(s.work.join("work/incompat/volatile").exists());
    snaps.mount("v1", &target).unwrap();
    assert_eq!(std::fs::read(target.join("etc/written")).unwrap(), b"upper");
    snaps.unmount(&target).unwrap();
    // So is a detached view (cp, diff of a stopped container).
    drop(snaps.open_detached("v1").unwrap());

    // As if the host had restarted since: the writable layer is reset, the image shows again.
    let p = store.snapshots_dir().join("v1/snapshot.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    doc["boot_id"] = serde_json::json!("another-boot");
    std::fs::write(&p, serde_json::to_vec(&doc).unwrap()).unwrap();
    snaps.mount("v1", &target).unwrap();
    assert!(!target.join("etc/written").exists());
    check_view(&target);
    snaps.unmount(&target).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert_ne!(
        doc["boot_id"], "another-boot",
        "the record keeps the old boot"
    );
    snaps.remove("v1").unwrap();
    snaps.remove("p1").unwrap();
}
