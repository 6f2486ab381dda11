//! The house rules of ../shared/ARCHITECTURE.md, checked over `cargo
//! metadata`: dependencies between our crates point downward only, the
//! testkit is never a normal dependency, and `wire` stays free of I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// For each crate of ours, the crates of ours it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("wire", &[]),
    ("protect", &["wire"]),
    ("registry", &["wire", "protect"]),
    ("transport", &["wire"]),
    ("store", &["wire"]),
    (
        "messaging",
        &["wire", "protect", "registry", "transport", "store"],
    ),
    (
        "gateway",
        &[
            "wire",
            "protect",
            "registry",
            "transport",
            "store",
            "messaging",
        ],
    ),
    (
        "testkit",
        &[
            "wire",
            "protect",
            "registry",
            "transport",
            "store",
            "messaging",
        ],
    ),
];

/// Crates that would bring I/O or async into the sans-I/O core.
const IO_CRATES: &[&str] = &[
    "tokio",
    "reqwest",
    "rusqlite",
    "fe2o3-amqp",
    "openssl",
    "ureq",
    "axum",
];

struct Dependency {
    name: String,
    dev: bool,
}

fn workspace_dependencies() -> BTreeMap<String, Vec<Dependency>> {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut crates = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(short) = name.strip_prefix("helsemelding-") else {
            continue;
        };
        let dependencies = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| Dependency {
                name: d["name"].as_str().unwrap().to_string(),
                dev: d["kind"].as_str() == Some("dev"),
            })
            .collect();
        crates.insert(short.to_string(), dependencies);
    }
    crates
}

#[test]
fn our_crates_depend_downward_only() {
    let crates = workspace_dependencies();
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(name, deps)| (*name, deps.iter().copied().collect()))
        .collect();
    let mut violations = Vec::new();
    for (name, dependencies) in &crates {
        let Some(may_use) = allowed.get(name.as_str()) else {
            violations.push(format!("crate {name} is not in ARCHITECTURE.md's table"));
            continue;
        };
        for dependency in dependencies.iter().filter(|d| !d.dev) {
            let Some(ours) = dependency.name.strip_prefix("helsemelding-") else {
                continue;
            };
            if !may_use.contains(ours) {
                violations.push(format!("{name} depends on {ours}, which it may not use"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "architecture violations:\n{}",
        violations.join("\n")
    );
    assert!(
        crates.contains_key("wire") && crates.contains_key("gateway"),
        "metadata read: {:?}",
        crates.keys()
    );
}

#[test]
fn wire_is_free_of_io_crates() {
    let crates = workspace_dependencies();
    let io: Vec<_> = crates["wire"]
        .iter()
        .filter(|d| !d.dev && IO_CRATES.contains(&d.name.as_str()))
        .map(|d| d.name.clone())
        .collect();
    assert!(
        io.is_empty(),
        "wire must stay sans-I/O but depends on {io:?}"
    );
}
