//! Copying an image with its signatures and attestations between stores (`distro push`), and
//! pulling one that verifies (`distro pull`).
//!
//! Blobs go first and only the missing ones are sent; the manifest (and so the tag) moves only
//! once every blob it references is present. The `.sig` and `.att` manifests follow the image;
//! when the destination already has some, the new layers are appended rather than replacing them.
//!
//! A release is published in the order `distro release` uses: [`push_by_digest`] (no tag), the
//! signatures and attestations, [`verify::verify`] of the pushed digest in the destination, and
//! only then [`move_tag`]. [`push_release`] (`distro push --release`) does the same per image,
//! and [`copy_verified`] (`distro push SRC DEST:TAG --key`) for one image, so a tag never names
//! an image that is unsigned, unattested or does not verify. [`copy`] (no key) keeps the order,
//! the tag last, but moves it without a verification.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cosign;
use crate::digest;
use crate::error::{Error, Result};
use crate::keys::VerifyingKey;
use crate::oci::Manifest;
use crate::store::{FetchedManifest, Recording, Store};
use crate::verify::{self, Policy, Report};

/// What [`copy`] did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyOutcome {
    /// Image digest (the same on both sides).
    pub digest: String,
    /// Tag set in the destination; none for a push by digest ([`push_by_digest`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Blobs sent.
    pub blobs_copied: u64,
    /// Blobs the destination already had.
    pub blobs_present: u64,
    /// Of the blobs copied, those mounted from another repository of the registry (a layer
    /// shared by several images of a release).
    pub blobs_mounted: u64,
    /// Manifests written (image, `.sig`, `.att`).
    pub manifests: Vec<String>,
}

fn copy_manifest(
    src: &mut dyn Store,
    dest: &mut dyn Store,
    m: &FetchedManifest,
    tag: Option<&str>,
    out: &mut CopyOutcome,
) -> Result<()> {
    let manifest = Manifest::parse(
        &format!("manifest {} in {}", m.digest, src.describe()),
        &m.bytes,
    )?;
    let mut wanted: Vec<(String, u64)> =
        vec![(manifest.config.digest.clone(), manifest.config.size)];
    wanted.extend(manifest.layers.iter().map(|l| (l.digest.clone(), l.size)));
    let mut seen = BTreeSet::new();
    for (d, size) in &wanted {
        if !seen.insert(d.clone()) {
            continue;
        }
        if dest.has_blob(d)? {
            out.blobs_present += 1;
            continue;
        }
        let data = src.blob_sized(d, *size)?;
        // Present: confirmed by the HEAD above. Uploaded: confirmed by the registry's 201 for
        // the digest. Either way every blob is in place before the manifest (and the tag) moves.
        dest.upload_blob(d, &data)?;
        out.blobs_copied += 1;
    }
    let written = dest.put_manifest(tag, &m.bytes, &m.media_type)?;
    if written != m.digest {
        return Err(Error::DigestMismatch {
            what: format!("manifest written to {}", dest.describe()),
            expected: m.digest.clone(),
            actual: written,
        });
    }
    out.manifests
        .push(tag.map(str::to_string).unwrap_or_else(|| m.digest.clone()));
    Ok(())
}

/// Merges the cosign manifest under `tag` from `src` into `dest`: copied as is when `dest` has
/// none, otherwise `src`'s layers that `dest` lacks are appended.
fn merge_cosign(
    src: &mut dyn Store,
    dest: &mut dyn Store,
    tag: &str,
    out: &mut CopyOutcome,
) -> Result<()> {
    let Some(sm) = src.manifest(tag)? else {
        return Ok(());
    };
    let Some(dm) = dest.manifest(tag)? else {
        return copy_manifest(src, dest, &sm, Some(tag), out);
    };
    if dm.digest == sm.digest {
        out.manifests.push(format!("{tag} (unchanged)"));
        return Ok(());
    }
    let s = Manifest::parse(&format!("`{tag}` in {}", src.describe()), &sm.bytes)?;
    let d = Manifest::parse(&format!("`{tag}` in {}", dest.describe()), &dm.bytes)?;
    let have: BTreeSet<(String, Option<String>)> = d
        .layers
        .iter()
        .map(|l| {
            (
                l.digest.clone(),
                l.annotations.get(cosign::SIGNATURE_ANNOTATION).cloned(),
            )
        })
        .collect();
    for l in s.layers {
        if have.contains(&(
            l.digest.clone(),
            l.annotations.get(cosign::SIGNATURE_ANNOTATION).cloned(),
        )) {
            continue;
        }
        let data = src.blob_sized(&l.digest, l.size)?;
        cosign::append_layer(dest, tag, l, &data)?;
    }
    out.manifests.push(format!("{tag} (merged)"));
    Ok(())
}

/// Copies the image `selector` names from `src` to `dest` under `dest_tag`, with its
/// signatures and attestations, in the order a release publishes: the image by digest, then
/// its `.sig` and `.att`, and only then the tag. A copy stopped at any point leaves the tag
/// where it was; it never names an image whose signatures are still on their way. To move the
/// tag only for an image that verifies in `dest`, use [`copy_verified`].
pub fn copy(
    src: &mut dyn Store,
    selector: Option<&str>,
    dest: &mut dyn Store,
    dest_tag: &str,
) -> Result<CopyOutcome> {
    let mut out = push_with_signatures(src, selector, dest)?;
    tag_pushed(dest, dest_tag, &mut out)?;
    out.tag = Some(dest_tag.to_string());
    Ok(out)
}

/// [`push_by_digest`], then the signatures and attestations `src` holds for the image.
fn push_with_signatures(
    src: &mut dyn Store,
    selector: Option<&str>,
    dest: &mut dyn Store,
) -> Result<CopyOutcome> {
    let mut out = push_by_digest(src, selector, dest)?;
    let digest = out.digest.clone();
    merge_signatures(src, dest, &digest, &mut out)?;
    Ok(out)
}

/// [`move_tag`] for a pushed image, recorded among the manifests it wrote.
fn tag_pushed(dest: &mut dyn Store, tag: &str, out: &mut CopyOutcome) -> Result<()> {
    move_tag(dest, &out.digest, tag)?;
    out.manifests.push(tag.to_string());
    Ok(())
}

/// What [`copy_verified`] did.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedCopy {
    /// `REPOSITORY@sha256:…`: what was pushed and verified.
    pub by_digest: String,
    /// `REPOSITORY:TAG`: the tag, which names the image only when `tagged`.
    pub reference: String,
    /// The tag asked for (moved or not; the outcome's own `tag` stays unset).
    pub tag: String,
    /// Whether the tag was moved to the digest: only when the pushed image verified.
    pub tagged: bool,
    /// The verification of the pushed digest in the destination that decided it.
    pub verification: Report,
    /// What the push did.
    #[serde(flatten)]
    pub outcome: CopyOutcome,
}

/// Copies the image as [`copy`] does, but verifies the pushed digest in `dest` (signature,
/// attestations, policy; `identity` is the identity expected when the policy names none)
/// before the tag moves: an image that does not verify is left in `dest` by digest only, its
/// tag where it was. `repository` names the destination in the report (`REGISTRY/REPO`).
pub fn copy_verified(
    src: &mut dyn Store,
    selector: Option<&str>,
    dest: &mut dyn Store,
    dest_tag: &str,
    repository: &str,
    gate: &TagGate<'_>,
    identity: Option<&str>,
) -> Result<VerifiedCopy> {
    let mut outcome = push_with_signatures(src, selector, dest)?;
    let by_digest = format!("{repository}@{}", outcome.digest);
    let verification = verify::verify(
        dest,
        &by_digest,
        Some(&outcome.digest),
        gate.key,
        gate.policy,
        identity,
    );
    let tagged = verification.passed;
    if tagged {
        tag_pushed(dest, dest_tag, &mut outcome)?;
    }
    Ok(VerifiedCopy {
        by_digest,
        reference: format!("{repository}:{dest_tag}"),
        tag: dest_tag.to_string(),
        tagged,
        verification,
        outcome,
    })
}

fn outcome(digest: &str) -> CopyOutcome {
    CopyOutcome {
        digest: digest.to_string(),
        tag: None,
        blobs_copied: 0,
        blobs_present: 0,
        blobs_mounted: 0,
        manifests: Vec::new(),
    }
}

/// Merges the image's `.sig` and `.att` manifests (cosign's tags, named by the image digest)
/// from `src` into `dest`.
fn merge_signatures(
    src: &mut dyn Store,
    dest: &mut dyn Store,
    image_digest: &str,
    out: &mut CopyOutcome,
) -> Result<()> {
    for suffix in ["sig", "att"] {
        let tag = digest::cosign_tag(image_digest, suffix)?;
        merge_cosign(src, dest, &tag, out)?;
    }
    Ok(())
}

/// Pushes the image `selector` names in `src` to `dest` by digest: every blob `dest` lacks,
/// then the manifest under its digest. No tag is written: nothing names the image until
/// [`move_tag`], which a release calls only once the image is signed, attested and verified.
pub fn push_by_digest(
    src: &mut dyn Store,
    selector: Option<&str>,
    dest: &mut dyn Store,
) -> Result<CopyOutcome> {
    let (_, image) = cosign::resolve(src, selector)?;
    let mut out = outcome(&image.digest);
    copy_manifest(src, dest, &image, None, &mut out)?;
    Ok(out)
}

/// Points `tag` in `dest` at the manifest `dest` already holds under `digest` (the bytes it
/// holds, so the tag names exactly what was verified). Call it only for a verified digest.
pub fn move_tag(dest: &mut dyn Store, digest: &str, tag: &str) -> Result<()> {
    let m = dest.manifest(digest)?.ok_or_else(|| Error::NotFound {
        what: format!("manifest {digest} (pushed by digest before the tag moves)"),
        store: dest.describe(),
    })?;
    let written = dest.put_manifest(Some(tag), &m.bytes, &m.media_type)?;
    if written != digest {
        return Err(Error::DigestMismatch {
            what: format!("manifest tagged `{tag}` in {}", dest.describe()),
            expected: digest.to_string(),
            actual: written,
        });
    }
    Ok(())
}

/// One image of a release pushed by [`push_release`].
#[derive(Debug, Clone, Serialize)]
pub struct ReleasePush {
    /// Component (the layout's directory name).
    pub component: String,
    /// The push, its verification and whether the image's tag in its layout moved.
    #[serde(flatten)]
    pub copy: VerifiedCopy,
}

/// What [`push_release`] checks a pushed image against before its tag moves: the check
/// `distro release` makes before tagging.
#[derive(Debug, Clone, Copy)]
pub struct TagGate<'a> {
    /// The public key its signature and attestations must verify with.
    pub key: &'a VerifyingKey,
    /// The policy (FIPS evidence, SBOM, provenance, VEX, ...).
    pub policy: &'a Policy,
}

/// Every image layout under `images_dir` (`<component>/oci` holding an `index.json`), by
/// component name, sorted: the images of a line that has no release record.
pub fn image_layouts(images_dir: &std::path::Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut components: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(images_dir)
        .map_err(|e| Error::io("listing images", images_dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().join("oci"),
            )
        })
        .filter(|(_, p)| p.join("index.json").is_file())
        .collect();
    components.sort();
    if components.is_empty() {
        return Err(Error::NotFound {
            what: "image layouts (<component>/oci/index.json)".into(),
            store: format!("{} (run `distro image` first)", images_dir.display()),
        });
    }
    Ok(components)
}

/// Pushes every image of a built release (`components`: each component's OCI layout, as the
/// line's release record names it or [`image_layouts`] finds it; every image tag in each
/// layout, with the signatures and attestations the layout holds) to
/// `REGISTRY/NAMESPACE/<component>`, in one session: one connection pool, one authentication, and
/// a blob shared by several images (the base layer) is uploaded once and mounted into the other
/// repositories. Each image goes by digest, then its `.sig`/`.att`; it is verified in the
/// registry against `gate`, and only an image that verifies gets its tag ([`move_tag`]). An
/// image that does not stays pushed by digest, untagged; its [`VerifiedCopy::verification`] says
/// what is missing.
pub fn push_release(
    components: &[(String, std::path::PathBuf)],
    registry: &str,
    namespace: &str,
    opts: &crate::registry::RegistryOptions,
    gate: &TagGate<'_>,
) -> Result<Vec<ReleasePush>> {
    if components.is_empty() {
        return Err(Error::NotFound {
            what: "image layouts".into(),
            store: "the release (run `distro image` first)".into(),
        });
    }
    let namespace = namespace.trim_matches('/');
    let repo = |c: &str| {
        if namespace.is_empty() {
            c.to_string()
        } else {
            format!("{namespace}/{c}")
        }
    };
    let first = crate::registry::Registry::connect(registry, &repo(&components[0].0), opts)?;
    let mut out = Vec::new();
    for (component, layout_dir) in components {
        let mut layout = crate::store::Layout::open_dir(layout_dir, false)?;
        let mut dest = first.sibling(&repo(component));
        let repository = format!("{registry}/{}", repo(component));
        for tag in cosign::image_tags(&layout) {
            let mut copied = copy_verified(
                &mut layout,
                Some(&tag),
                &mut dest,
                &tag,
                &repository,
                gate,
                Some(&repository),
            )?;
            copied.outcome.blobs_mounted = std::mem::take(&mut dest.stats.blobs_mounted);
            out.push(ReleasePush {
                component: component.clone(),
                copy: copied,
            });
        }
    }
    Ok(out)
}

/// What a verified pull checks the image against.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// The image as named (for the report).
    pub image_name: &'a str,
    /// Tag or digest in the source.
    pub selector: Option<&'a str>,
    /// The public key.
    pub key: &'a VerifyingKey,
    /// The policy.
    pub policy: &'a Policy,
    /// Identity expected when the policy names none.
    pub default_identity: Option<&'a str>,
}

/// Verifies the image in `src` and, only if every check holds, writes it (with its signatures
/// and attestations, byte for byte as verified) into `dest` under `dest_tag`. Returns the report
/// and whether anything was written.
pub fn pull_verified(
    src: Box<dyn Store>,
    expect: &Expectation<'_>,
    dest: &mut dyn Store,
    dest_tag: &str,
) -> Result<(Report, bool)> {
    let mut rec = Recording::new(src);
    let report = verify::verify(
        &mut rec,
        expect.image_name,
        expect.selector,
        expect.key,
        expect.policy,
        expect.default_identity,
    );
    if !report.passed {
        return Ok((report, false));
    }
    let Some(image_digest) = report.digest.clone() else {
        return Ok((report, false));
    };
    // The source's own tag is not copied: the image gets `dest_tag`; the signature and
    // attestation tags keep their cosign names.
    rec.write_to(dest, |t| {
        t.starts_with("sha256-") && (t.ends_with(".sig") || t.ends_with(".att"))
    })?;
    if let Some(m) = rec.manifests.get(&image_digest) {
        dest.put_manifest(Some(dest_tag), &m.bytes, &m.media_type)?;
    }
    // Every blob the written image relies on is read back from the destination (size and
    // digest), so a copy that was already there and damaged, or a failed write, is caught
    // here rather than by the next `verify`.
    for (d, data) in &rec.blobs {
        dest.blob_sized(d, data.len() as u64).map_err(|e| {
            Error::invalid(
                format!("blob {d} in {}", dest.describe()),
                format!("it does not read back as verified after the pull: {e}"),
            )
        })?;
    }
    for d in rec.manifests.keys() {
        if dest.manifest(d)?.is_none() {
            return Err(Error::NotFound {
                what: format!("manifest {d} just written"),
                store: dest.describe(),
            });
        }
    }
    Ok((report, true))
}

impl Store for Box<dyn Store> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn manifest(&mut self, reference: &str) -> Result<Option<FetchedManifest>> {
        (**self).manifest(reference)
    }
    fn blob(&mut self, digest: &str) -> Result<Vec<u8>> {
        (**self).blob(digest)
    }
    fn blob_sized(&mut self, digest: &str, size: u64) -> Result<Vec<u8>> {
        (**self).blob_sized(digest, size)
    }
    fn has_blob(&mut self, digest: &str) -> Result<bool> {
        (**self).has_blob(digest)
    }
    fn put_blob(&mut self, digest: &str, data: &[u8]) -> Result<bool> {
        (**self).put_blob(digest, data)
    }
    fn upload_blob(&mut self, digest: &str, data: &[u8]) -> Result<()> {
        (**self).upload_blob(digest, data)
    }
    fn put_manifest(
        &mut self,
        tag: Option<&str>,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        (**self).put_manifest(tag, bytes, media_type)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::keys::SigningKey;
    use crate::oci::{Descriptor, MEDIA_CONFIG, MEDIA_LAYER_GZIP, MEDIA_MANIFEST};
    use crate::store::Layout;

    /// A layout holding one image tagged `v1`, signed and attested with `key`.
    fn signed_layout(dir: &std::path::Path, key: &SigningKey) -> Layout {
        let mut l = Layout::open_dir(dir, true).unwrap();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"not really a tarball, but content all the same";
        l.put_blob(&digest::sha256(config), config).unwrap();
        l.put_blob(&digest::sha256(layer), layer).unwrap();
        let m = Manifest::new(
            Descriptor::of(MEDIA_CONFIG, config),
            vec![Descriptor::of(MEDIA_LAYER_GZIP, layer)],
        );
        l.put_manifest(Some("v1"), &m.to_bytes(), MEDIA_MANIFEST)
            .unwrap();
        cosign::sign(&mut l, Some("v1"), "registry.test/mesh-proxy", key).unwrap();
        cosign::attest(
            &mut l,
            Some("v1"),
            "registry.test/mesh-proxy",
            key,
            &[cosign::Predicate {
                predicate_type: "https://example.test/predicate".into(),
                body: serde_json::json!({"n": 1}),
            }],
        )
        .unwrap();
        l
    }

    /// A store that refuses every write after the first `budget`: a copy killed at that write.
    struct Killed<'a> {
        inner: &'a mut Layout,
        budget: usize,
    }

    impl Killed<'_> {
        fn spend(&mut self) -> Result<()> {
            if self.budget == 0 {
                return Err(Error::invalid("killed", "the copy was stopped here"));
            }
            self.budget -= 1;
            Ok(())
        }
    }

    impl Store for Killed<'_> {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn manifest(&mut self, reference: &str) -> Result<Option<FetchedManifest>> {
            self.inner.manifest(reference)
        }
        fn blob(&mut self, digest: &str) -> Result<Vec<u8>> {
            self.inner.blob(digest)
        }
        fn blob_sized(&mut self, digest: &str, size: u64) -> Result<Vec<u8>> {
            self.inner.blob_sized(digest, size)
        }
        fn has_blob(&mut self, digest: &str) -> Result<bool> {
            self.inner.has_blob(digest)
        }
        fn put_blob(&mut self, digest: &str, data: &[u8]) -> Result<bool> {
            self.spend()?;
            self.inner.put_blob(digest, data)
        }
        fn put_manifest(
            &mut self,
            tag: Option<&str>,
            bytes: &[u8],
            media_type: &str,
        ) -> Result<String> {
            self.spend()?;
            self.inner.put_manifest(tag, bytes, media_type)
        }
    }

    /// `store` holds exactly one signature and one attestation of the image `digest`.
    fn assert_signed_once(store: &mut Layout, digest: &str) {
        assert_eq!(cosign::signatures(store, digest).unwrap().len(), 1);
        assert_eq!(cosign::attestations(store, digest).unwrap().len(), 1);
    }

    /// A single-image copy stopped at any write leaves no tag in the destination, or a tag whose
    /// image already has its signature and attestation there; a rerun completes it without a
    /// second signature or attestation.
    #[test]
    fn a_copy_stopped_anywhere_never_tags_an_unsigned_image() {
        let key = SigningKey::generate().unwrap();
        let src_dir = tempfile::tempdir().unwrap();
        let mut src = signed_layout(src_dir.path(), &key);
        let (_, image) = cosign::resolve(&mut src, Some("v1")).unwrap();
        let mut kill_points = 0;
        for budget in 0.. {
            let dest_dir = tempfile::tempdir().unwrap();
            let mut dest = Layout::open_dir(dest_dir.path(), true).unwrap();
            let done = copy(
                &mut src,
                Some("v1"),
                &mut Killed {
                    inner: &mut dest,
                    budget,
                },
                "v1",
            )
            .is_ok();
            let mut seen = Layout::open_dir(dest_dir.path(), false).unwrap();
            if seen.manifest("v1").unwrap().is_some() {
                assert_signed_once(&mut seen, &image.digest);
            }
            if done {
                assert!(
                    seen.manifest("v1").unwrap().is_some(),
                    "a finished copy is tagged"
                );
                break;
            }
            kill_points += 1;
            // Resumed: the copy completes, and nothing it had sent is sent twice.
            copy(&mut src, Some("v1"), &mut dest, "v1").unwrap();
            let mut seen = Layout::open_dir(dest_dir.path(), false).unwrap();
            assert_eq!(seen.manifest("v1").unwrap().unwrap().digest, image.digest);
            assert_signed_once(&mut seen, &image.digest);
        }
        // blobs, the image manifest, the .sig and .att blobs and manifests: each a kill point.
        assert!(kill_points >= 6, "only {kill_points} kill points");
    }

    /// With a gate, an image that does not verify with the key is left by digest only (its tag
    /// not written) and one that does is tagged.
    #[test]
    fn a_verified_copy_tags_only_what_verifies() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let src_dir = tempfile::tempdir().unwrap();
        let mut src = signed_layout(src_dir.path(), &key);
        // The signature and the key are what this test is about; the documents a release
        // attests are the registry tests' (distro/tests/image_registry.rs).
        let policy = Policy {
            require_fips: false,
            require_validated_module: false,
            require_sbom: false,
            require_provenance: false,
            require_vex: false,
            ..Policy::default()
        };
        for (k, tagged) in [(&other, false), (&key, true)] {
            let dest_dir = tempfile::tempdir().unwrap();
            let mut dest = Layout::open_dir(dest_dir.path(), true).unwrap();
            let public = k.public();
            let copied = copy_verified(
                &mut src,
                Some("v1"),
                &mut dest,
                "v1",
                "registry.test/mesh-proxy",
                &TagGate {
                    key: &public,
                    policy: &policy,
                },
                Some("registry.test/mesh-proxy:v1"),
            )
            .unwrap();
            assert_eq!(copied.tagged, tagged, "{:?}", copied.verification.checks);
            let mut seen = Layout::open_dir(dest_dir.path(), false).unwrap();
            assert_eq!(seen.manifest("v1").unwrap().is_some(), tagged);
            assert!(seen.manifest(&copied.outcome.digest).unwrap().is_some());
        }
    }
}
