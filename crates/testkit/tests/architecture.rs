//! The house rules of ../shared/ARCHITECTURE.md, checked over `cargo
//! metadata`: dependencies between our crates point downward only, the
//! testkit is never a normal dependency, `wire` stays free of I/O, and the
//! transport trait crate free of AMQP (that is `transport-amqp`'s, which
//! only the gateway picks; other crates' tests may use it), and the store
//! trait crate free of databases (SQLite is `store-sqlite`'s, which only
//! the gateway picks, as it picks the transport).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// For each crate of ours, the crates of ours it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("wire", &[]),
    ("protect", &["wire"]),
    ("registry", &["wire", "protect"]),
    ("transport", &["wire"]),
    ("transport-amqp", &["wire", "transport"]),
    ("store", &["wire"]),
    ("store-sqlite", &["wire", "store"]),
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
            "transport-amqp",
            "store",
            "store-sqlite",
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
            "transport-amqp",
            "store",
            "store-sqlite",
            "messaging",
        ],
    ),
];

/// Crates that would bring AMQP back into the transport trait crate.
const AMQP_CRATES: &[&str] = &[
    "fe2o3-amqp",
    "rustls",
    "tokio-rustls",
    "rustls-native-certs",
];

/// Database drivers: a backend's, never the store trait crate's.
const DATABASE_CRATES: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "postgres",
    "tokio-postgres",
    "sqlx",
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

/// Every dependency of ours that the table does not allow (dev-dependencies
/// are free: tests may use any crate).
fn violations(crates: &BTreeMap<String, Vec<Dependency>>) -> Vec<String> {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(name, deps)| (*name, deps.iter().copied().collect()))
        .collect();
    let mut violations = Vec::new();
    for (name, dependencies) in crates {
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
    violations
}

#[test]
fn our_crates_depend_downward_only() {
    let crates = workspace_dependencies();
    let violations = violations(&crates);
    assert!(
        violations.is_empty(),
        "architecture violations:\n{}",
        violations.join("\n")
    );
    for name in [
        "wire",
        "transport",
        "transport-amqp",
        "store",
        "store-sqlite",
        "gateway",
    ] {
        assert!(
            crates.contains_key(name),
            "metadata read: {:?}",
            crates.keys()
        );
    }
}

#[test]
fn an_upward_reach_fails_and_a_test_only_one_does_not() {
    let dependency = |name: &str, dev| Dependency {
        name: format!("helsemelding-{name}"),
        dev,
    };
    let crates = BTreeMap::from([
        (
            "messaging".to_string(),
            vec![
                dependency("transport", false),
                dependency("transport-amqp", true),
            ],
        ),
        (
            "transport".to_string(),
            vec![dependency("transport-amqp", false)],
        ),
        (
            "transport-amqp".to_string(),
            vec![dependency("messaging", false)],
        ),
    ]);
    assert_eq!(
        violations(&crates),
        [
            "transport depends on transport-amqp, which it may not use",
            "transport-amqp depends on messaging, which it may not use",
        ]
    );
    let with_sqlite = BTreeMap::from([
        (
            "messaging".to_string(),
            vec![
                dependency("store", false),
                dependency("store-sqlite", false),
            ],
        ),
        (
            "store-sqlite".to_string(),
            vec![dependency("store", false), dependency("transport", false)],
        ),
        (
            "gateway".to_string(),
            vec![dependency("store-sqlite", false)],
        ),
    ]);
    assert_eq!(
        violations(&with_sqlite),
        [
            "messaging depends on store-sqlite, which it may not use",
            "store-sqlite depends on transport, which it may not use",
        ]
    );
    let with_amqp = BTreeMap::from([(
        "messaging".to_string(),
        vec![dependency("transport-amqp", false)],
    )]);
    assert_eq!(
        violations(&with_amqp),
        ["messaging depends on transport-amqp, which it may not use"]
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

#[test]
fn the_transport_trait_crate_is_free_of_amqp() {
    let crates = workspace_dependencies();
    let amqp: Vec<_> = crates["transport"]
        .iter()
        .filter(|d| !d.dev && AMQP_CRATES.contains(&d.name.as_str()))
        .map(|d| d.name.clone())
        .collect();
    assert!(
        amqp.is_empty(),
        "AMQP belongs in transport-amqp, but transport depends on {amqp:?}"
    );
}

#[test]
fn the_store_trait_crate_is_free_of_databases() {
    let crates = workspace_dependencies();
    let databases: Vec<_> = crates["store"]
        .iter()
        .filter(|d| DATABASE_CRATES.contains(&d.name.as_str()))
        .map(|d| d.name.clone())
        .collect();
    assert!(
        databases.is_empty(),
        "a database belongs in its backend crate (store-sqlite), but store depends on {databases:?}"
    );
    // Only the gateway picks the backend: messaging's own code never names it.
    let messaging_backends: Vec<_> = crates["messaging"]
        .iter()
        .filter(|d| !d.dev)
        .filter(|d| {
            d.name == "helsemelding-store-sqlite" || DATABASE_CRATES.contains(&d.name.as_str())
        })
        .map(|d| d.name.clone())
        .collect();
    assert!(
        messaging_backends.is_empty(),
        "messaging must use the store traits only, but depends on {messaging_backends:?}"
    );
}
