//! Image SBOMs and the embedded-list decoder, through the public API only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::process::Command;

use distro_sbom::graph::{DepKind, Graph, Package, PkgSource};
use distro_sbom::{auditable, cyclonedx, image, spdx, BinaryInput, DepList};

fn pkg(name: &str, deps: Vec<usize>) -> Package {
    Package {
        name: name.into(),
        version: "1.2.3".into(),
        source: PkgSource::CratesIo,
        license: Some("MIT/Apache-2.0".into()),
        checksum: Some("ab".repeat(32)),
        kind: DepKind::Runtime,
        features: vec!["default".into()],
        dependencies: deps,
        description: None,
        repository: Some("https://example.org/repo".into()),
    }
}

fn small_graph() -> Graph {
    let list = DepList {
        packages: vec![
            auditable::DepListPackage {
                name: "app".into(),
                version: "0.1.0".into(),
                source: "local".into(),
                kind: None,
                dependencies: vec![1],
                root: true,
            },
            auditable::DepListPackage {
                name: "lib".into(),
                version: "1.2.3".into(),
                source: "crates.io".into(),
                kind: None,
                dependencies: vec![],
                root: false,
            },
        ],
    };
    let mut g = list.to_graph("app");
    g.packages[1] = Package {
        dependencies: vec![],
        ..pkg("lib", vec![])
    };
    g
}

fn python_valid(json: &[u8]) {
    let ok = Command::new("python3")
        .args(["-c", "import cyclonedx.validation.json"])
        .output()
        .map(|o| o.status.success());
    if !matches!(ok, Ok(true)) {
        distro_testsupport::missing(
            "independent validation",
            "python3 module cyclonedx (cyclonedx-python-lib) is not installed",
            "pip install 'cyclonedx-python-lib[json-validation]' (scripts/install-deps.sh)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bom.json");
    std::fs::write(&f, json).unwrap();
    let script = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\ne = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nsys.exit(0 if e is None else str(e))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `image::extend` adds the image's files with their hashes, keeps the document valid, changes
/// the serial number, and gives the same bytes whatever the order or repetition of calls.
#[test]
fn image_files_are_added_with_hashes() {
    let g = small_graph();
    let sha = "cd".repeat(32);
    let input = BinaryInput {
        graph: &g,
        binary_sha256: &sha,
        source_date_epoch: 0,
        evidence: None,
        recovered_from_binary: false,
    };
    let base = cyclonedx::for_binary(&input).unwrap();
    let ca = (
        "/etc/ssl/certs/ca-certificates.crt",
        "11".repeat(32),
        "ca-bundle",
    );
    let pw = ("/etc/passwd", "22".repeat(32), "passwd");
    let gr = ("/etc/group", "33".repeat(32), "group");

    let mut a = base.clone();
    image::extend(&mut a, &[ca.clone(), pw.clone(), gr.clone()]).unwrap();
    let mut b = base.clone();
    image::extend(&mut b, std::slice::from_ref(&gr)).unwrap();
    image::extend(&mut b, &[pw, ca.clone()]).unwrap();
    image::extend(&mut b, &[ca]).unwrap();
    assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
    assert_ne!(a.serial_number, base.serial_number);

    let files: Vec<_> = a
        .components
        .iter()
        .filter(|c| c.component_type == "file")
        .collect();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0].name, "/etc/group");
    assert_eq!(files[0].hashes[0].content, "33".repeat(32));
    python_valid(&a.to_json().unwrap());
    // SPDX lists the files as contained in the image's subject.
    let doc = spdx::from_bom(&a);
    assert_eq!(
        doc.relationships
            .iter()
            .filter(|r| r.relationship_type == "CONTAINS")
            .count(),
        3
    );
    doc.to_json().unwrap();

    let mut c = base.clone();
    assert!(
        image::extend(&mut c, &[("etc/passwd", "22".repeat(32), "passwd")]).is_err(),
        "relative path refused"
    );
    assert!(
        image::extend(&mut c, &[("/etc/passwd", "XYZ".to_string(), "passwd")]).is_err(),
        "bad hash refused"
    );
}

/// The decoder of embedded lists (outside input) never panics on corrupted sections: a smoke
/// run over deterministic mutations of a valid payload.
#[test]
fn embedded_list_decoder_survives_corruption() {
    let valid = DepList::from_graph(&small_graph()).to_section_bytes();
    let path = std::path::Path::new("fuzz");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    for _ in 0..5000 {
        let mut bytes = valid.clone();
        let flips = 1 + (next() % 4) as usize;
        for _ in 0..flips {
            let i = (next() as usize) % bytes.len();
            bytes[i] ^= (next() & 0xff) as u8;
        }
        if next() % 5 == 0 {
            bytes.truncate((next() as usize) % bytes.len());
        }
        if DepList::from_section_bytes(&bytes, path).is_ok() {
            accepted += 1;
        }
    }
    assert!(DepList::from_section_bytes(&valid, path).is_ok());
    eprintln!("{accepted} of 5000 mutations still decoded to a valid list");
}
