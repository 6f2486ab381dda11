//! `helsemelding --config F config`: loads and validates the configuration
//! and prints the effective values (secrets shown only as set or not set),
//! so an operator sees what the gateway will do before starting it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::config::{BrokerEndpoint, Config, KeyPair, Registry, RegistryAuth};

/// Show the effective configuration after environment overrides.
#[derive(clap::Args)]
pub struct Args {
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `config`: loads and validates the configuration at `config_path`
/// and prints the effective values.
pub fn run(config_path: Option<&Path>, args: Args) -> Result<ExitCode> {
    let path = config_path.context("no configuration: give --config FILE")?;
    let config = Config::load(path)?;
    let summary = summarise(&config);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_text(&summary, "");
    }
    Ok(ExitCode::SUCCESS)
}

fn summarise(config: &Config) -> Value {
    let broker = match &config.broker.endpoint {
        BrokerEndpoint::Amqp {
            url,
            password,
            exchange,
        } => json!({
            "url": url.as_str(),
            "exchange": exchange,
            "password": if password.is_some() { "set" } else { "not set" },
        }),
        BrokerEndpoint::Local { path } => json!({ "local": path }),
    };
    let registry = match &config.registry {
        Registry::Dir(dir) => json!({ "dir": dir }),
        Registry::Http {
            address_url,
            cppa_url,
            cache_for,
            timeout,
            auth,
        } => json!({
            "address_url": address_url.as_str(),
            "cppa_url": cppa_url.as_str(),
            "cache_seconds": cache_for.as_secs(),
            "timeout_ms": millis(*timeout),
            "auth": match auth {
                RegistryAuth::None => json!("none"),
                RegistryAuth::TokenFile(file) => json!({ "token_file": file }),
                RegistryAuth::Token(_) => json!("token set"),
            },
        }),
    };
    json!({
        "her_id": config.her_id,
        "her_ids": config.her_ids,
        "broker": broker,
        "dialect": config.broker.dialect.name(),
        "ca_file": config.broker.ca_file,
        "reply_queue": config.broker.reply_queue,
        "management_url": config.broker.management_url.as_ref().map(|u| u.as_str()),
        "connect_timeout_ms": millis(config.broker.connect_timeout),
        "operation_timeout_ms": millis(config.broker.operation_timeout),
        "send_retry_ms": millis(config.broker.send_retry_for),
        "unavailable_after_ms": millis(config.broker.unavailable_after),
        "reconnect_backoff_min_ms": millis(config.broker.reconnect_backoff_min),
        "reconnect_backoff_max_ms": millis(config.broker.reconnect_backoff_max),
        "identity": {
            "signing": key_pair(&config.identity.signing),
            "decryption": key_pair(&config.identity.decryption),
            "legacy_decryption": key_pair(&config.identity.legacy_decryption),
        },
        "registry": registry,
        "trust": {
            "anchors": config.trust.anchors,
            "revocation": format!("{:?}", config.trust.revocation).to_lowercase(),
            "crl_timeout_ms": millis(config.trust.crl_timeout),
            "allow_3des": config.trust.allow_3des,
        },
        "store": config.store_path,
        "receipts": {
            "deadline_hours": config.receipts.deadline_hours,
            "deadline_hours_by_function": config.receipts.deadline_hours_by_function,
        },
        "audit_retention_days": config.audit_retention_days,
        "receive": {
            "strict_message_functions": config.receive.strict_message_functions,
            "allow_party_mismatch": config.receive.allow_party_mismatch,
            "allow_unprotected": config.receive.allow_unprotected,
            "revocation_unknown_for_seconds": config.receive.revocation_unknown_for.as_secs(),
            "dead_letters": format!("{:?}", config.receive.dead_letters).to_lowercase(),
            "fault_pause_max_seconds": config.receive.fault_pause_max.as_secs(),
            "max_mib_in_flight": config.receive.max_bytes_in_flight / (1024 * 1024),
            "workers": config.receive.workers,
            "delivery_limit": config.receive.retry.delivery_limit,
            "retry_backoff_min_ms": millis(config.receive.retry.backoff_min),
            "retry_backoff_max_ms": millis(config.receive.retry.backoff_max),
            "held_back_per_worker": config.receive.held_back_per_worker,
        },
        "send": {
            "async_ttl_seconds": config.send.async_ttl.map(|t| t.as_secs()),
            "payload_metadata": config.send.payload_metadata,
            "extra_properties": config.send.extra_properties.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "outbox_max_attempts": config.send.outbox.max_attempts,
            "outbox_backoff_min_ms": millis(config.send.outbox.backoff_min),
            "outbox_backoff_max_ms": millis(config.send.outbox.backoff_max),
        },
    })
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn key_pair(pair: &Option<KeyPair>) -> Value {
    let show = |p: &PathBuf| p.display().to_string();
    match pair {
        None => Value::Null,
        Some(KeyPair::Files { cert, key }) => json!({ "cert": show(cert), "key": show(key) }),
        Some(KeyPair::Pkcs12 { bundle }) => json!({ "p12": show(bundle) }),
    }
}

fn print_text(value: &Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                print_text(inner, &name);
            }
        }
        Value::String(text) => println!("{prefix} = {text}"),
        other => println!("{prefix} = {other}"),
    }
}
