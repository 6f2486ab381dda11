use super::*;

fn her_ids(config: &Config) -> Vec<u32> {
    config.her_ids.iter().map(|h| h.get()).collect()
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "sign.pem",
            "sign.key",
            "enc.pem",
            "enc.key",
            "ca.pem",
            "bundle.p12",
        ] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("registry")).unwrap();
        Setup { dir }
    }

    fn load(&self, text: &str, env: &[(&str, &str)]) -> Result<Config> {
        let path = self.dir.path().join("helsemelding.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_with_env(
            &path,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn error(&self, text: &str, env: &[(&str, &str)]) -> String {
        format!("{:#}", self.load(text, env).unwrap_err())
    }
}

const FULL: &str = r#"
her_id = 91462
[broker]
url = "amqps://user@sb.test.nhn.no:5671/NHNTESTServiceBus"
dialect = "rabbitmq"
ca_file = "ca.pem"
[identity]
signing_cert = "sign.pem"
signing_key = "sign.key"
decryption_cert = "enc.pem"
decryption_key = "enc.key"
[registry]
dir = "registry"
[trust]
anchors = ["ca.pem"]
revocation = "require"
"#;

#[test]
fn the_documented_example_loads_with_paths_resolved_beside_the_file() {
    let setup = Setup::new();
    let config = setup.load(FULL, &[]).unwrap();
    assert_eq!(config.her_id.get(), 91462);
    let BrokerEndpoint::Amqp {
        url,
        exchange,
        password,
    } = &config.broker.endpoint
    else {
        panic!("expected an AMQP broker")
    };
    assert_eq!(url.host_str(), Some("sb.test.nhn.no"));
    assert_eq!(exchange.as_deref(), Some("NHNTESTServiceBus"));
    assert_eq!(password, &None);
    assert_eq!(
        config.broker.reply_queue, None,
        "the registry's, not derived"
    );
    assert_eq!(her_ids(&config), [91462]);
    assert!(!config.receive.strict_message_functions);
    assert!(!config.receive.allow_party_mismatch);
    assert!(!config.receive.allow_unprotected);
    assert_eq!(
        config.receive.revocation_unknown_for,
        std::time::Duration::from_secs(3600)
    );
    assert_eq!(config.receive.dead_letters, DeadLetterSetting::Auto);
    assert_eq!(
        config.receive.fault_pause_max,
        std::time::Duration::from_secs(30)
    );
    assert!(config.send.payload_metadata);
    assert_eq!(config.send.async_ttl, None);
    assert_eq!(config.send.outbox, OutboxPolicy::default());
    assert_eq!(config.receive.retry, RetryPolicy::default());
    assert_eq!(config.receive.workers, 4);
    assert_eq!(config.broker.dialect, Dialect::RabbitMq);
    assert_eq!(config.broker.operation_timeout, Duration::from_secs(15));
    assert_eq!(config.broker.send_retry_for, Duration::from_secs(60));
    assert_eq!(config.broker.ca_file, Some(setup.dir.path().join("ca.pem")));
    assert_eq!(
        config.identity.signing,
        Some(KeyPair::Files {
            cert: setup.dir.path().join("sign.pem"),
            key: setup.dir.path().join("sign.key")
        })
    );
    assert!(
        matches!(&config.registry, Registry::Dir(d) if d == &setup.dir.path().join("registry"))
    );
    assert_eq!(config.trust.revocation, RevocationPolicy::Require);
    assert_eq!(config.trust.crl_timeout, Duration::from_millis(1000));
    assert_eq!(config.receipts.deadline_hours, 24);
    assert_eq!(config.audit_retention_days, 730);
}

#[test]
fn environment_variables_override_keys_by_section() {
    let setup = Setup::new();
    let config = setup
        .load(
            FULL,
            &[
                ("HELSEMELDING_HER_ID", "109989"),
                ("HELSEMELDING_BROKER_URL", "local:queues.db"),
                ("HELSEMELDING_TRUST_REVOCATION", "warn"),
                ("HELSEMELDING_RECEIPTS_DEADLINE_HOURS", "48"),
                ("HELSEMELDING_LOG", "debug"),
                ("HELSEMELDING_P12_PASSWORD", "ignored here"),
                ("HELSEMELDING_TEST_AMQP_URL", "ignored too"),
                ("PATH", "/usr/bin"),
            ],
        )
        .unwrap();
    assert_eq!(config.her_id.get(), 109989);
    assert!(
        matches!(&config.broker.endpoint, BrokerEndpoint::Local { path } if path == &setup.dir.path().join("queues.db"))
    );
    assert_eq!(config.trust.revocation, RevocationPolicy::Warn);
    assert_eq!(config.receipts.deadline_hours, 48);
}

#[test]
fn the_broker_password_comes_only_from_the_environment_and_never_shows() {
    let setup = Setup::new();
    let config = setup
        .load(FULL, &[("HELSEMELDING_BROKER_PASSWORD", "12345")])
        .unwrap();
    let BrokerEndpoint::Amqp { password, .. } = &config.broker.endpoint else {
        panic!()
    };
    assert_eq!(password.as_deref(), Some("12345"), "digits stay a string");
    assert!(!format!("{config:?}").contains("12345"));

    let in_file = FULL.replace(
        "dialect = \"rabbitmq\"",
        "dialect = \"rabbitmq\"\npassword = \"s3cret\"",
    );
    let error = setup.error(&in_file, &[]);
    assert!(
        error.contains("broker.password") && !error.contains("s3cret"),
        "{error}"
    );
    let in_url = FULL.replace("amqps://user@", "amqps://user:s3cret@");
    let error = setup.error(&in_url, &[]);
    assert!(
        error.contains("broker.url")
            && error.contains("HELSEMELDING_BROKER_PASSWORD")
            && !error.contains("s3cret"),
        "{error}"
    );
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let setup = Setup::new();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&FULL.replace("dialect", "dialekt"), &[], "dialekt"),
        (
            &FULL.replace("\"rabbitmq\"", "\"kafka\""),
            &[],
            "broker.dialect",
        ),
        (
            &FULL.replace("\"require\"", "\"sometimes\""),
            &[],
            "trust.revocation",
        ),
        (
            &FULL.replace("her_id = 91462", "her_id = \"abc\""),
            &[],
            "her_id",
        ),
        (&FULL.replace("her_id = 91462", "her_id = 0"), &[], "her_id"),
        (&FULL.replace("amqps://", "http://"), &[], "broker.url"),
        (
            &FULL.replace("\"sign.key\"", "\"missing.key\""),
            &[],
            "identity.signing_key",
        ),
        (
            &FULL.replace("signing_key = \"sign.key\"\n", ""),
            &[],
            "identity.signing_key",
        ),
        (
            &FULL.replace(
                "anchors = [\"ca.pem\"]",
                "anchors = [\"ca.pem\", \"nope.pem\"]",
            ),
            &[],
            "trust.anchors[1]",
        ),
        (FULL, &[("HELSEMELDING_BROKER_URLL", "x")], "urll"),
        (
            FULL,
            &[("HELSEMELDING_NOSECTION_X", "x")],
            "HELSEMELDING_NOSECTION_X",
        ),
        (
            FULL,
            &[("HELSEMELDING_AUDIT_RETENTION_DAYS", "30")],
            "audit.retention_days",
        ),
        ("her_id = [", &[], "line 1"),
        (
            FULL,
            &[("HELSEMELDING_SEND_OUTBOX_MAX_ATTEMPTS", "0")],
            "send.outbox_max_attempts",
        ),
        (
            FULL,
            &[("HELSEMELDING_RECEIVE_WORKERS", "0")],
            "receive.workers",
        ),
        (
            FULL,
            &[("HELSEMELDING_RECEIVE_DELIVERY_LIMIT", "0")],
            "receive.delivery_limit",
        ),
        (
            FULL,
            &[("HELSEMELDING_RECEIVE_RETRY_BACKOFF_MIN_MS", "60000")],
            "receive.retry_backoff_min_ms: 60000 is above receive.retry_backoff_max_ms",
        ),
        (
            FULL,
            &[("HELSEMELDING_BROKER_OPERATION_TIMEOUT_MS", "0")],
            "broker.operation_timeout_ms",
        ),
        (
            FULL,
            &[("HELSEMELDING_BROKER_RECONNECT_BACKOFF_MAX_MS", "50")],
            "broker.reconnect_backoff_min_ms",
        ),
        (
            FULL,
            &[("HELSEMELDING_SEND_OUTBOX_BACKOFF_MAX_MS", "0")],
            "send.outbox_backoff_max_ms",
        ),
        (
            FULL,
            &[("HELSEMELDING_BROKER_DIALECT", "kafka")],
            "broker.dialect",
        ),
        (
            FULL,
            &[("HELSEMELDING_HER_ID", "3000000000")],
            "above the largest HER-id",
        ),
    ];
    for (text, env, key) in cases {
        let error = setup.error(text, env);
        assert!(error.contains(key), "expected {key:?} in: {error}");
    }
}

#[test]
fn a_pkcs12_bundle_replaces_a_cert_and_key_but_not_both() {
    let setup = Setup::new();
    let with_p12 = FULL.replace(
        "signing_cert = \"sign.pem\"\nsigning_key = \"sign.key\"",
        "signing_p12 = \"bundle.p12\"",
    );
    let config = setup.load(&with_p12, &[]).unwrap();
    assert_eq!(
        config.identity.signing,
        Some(KeyPair::Pkcs12 {
            bundle: setup.dir.path().join("bundle.p12")
        })
    );
    let both = FULL.replace(
        "signing_key = \"sign.key\"",
        "signing_key = \"sign.key\"\nsigning_p12 = \"bundle.p12\"",
    );
    assert!(setup.error(&both, &[]).contains("identity.signing_p12"));
}

const HTTP_REGISTRY: &str = r#"
her_id = 91462
[broker]
url = "amqp://her@127.0.0.1:5672/NHNTestServiceBus"
management_url = "http://127.0.0.1:15672"
[registry]
address_url = "https://cpapi.test.grunndata.nhn.no"
cppa_url = "https://cppa.test.grunndata.nhn.no"
"#;

#[test]
fn the_http_registry_takes_its_token_from_a_file_or_the_environment_only() {
    let setup = Setup::new();
    std::fs::write(setup.dir.path().join("token"), "t").unwrap();
    let with_file = format!("{HTTP_REGISTRY}token_file = \"token\"\n");
    let config = setup.load(&with_file, &[]).unwrap();
    let Registry::Http { auth, timeout, .. } = &config.registry else {
        panic!("not the HTTP registry: {:?}", config.registry);
    };
    assert!(
        matches!(auth, RegistryAuth::TokenFile(p) if *p == setup.dir.path().join("token")),
        "{auth:?}"
    );
    assert_eq!(*timeout, Duration::from_secs(10));
    assert_eq!(
        config.broker.management_url.as_ref().map(url::Url::as_str),
        Some("http://127.0.0.1:15672/")
    );

    let config = setup
        .load(HTTP_REGISTRY, &[("HELSEMELDING_REGISTRY_TOKEN", "12345")])
        .unwrap();
    let Registry::Http { auth, .. } = &config.registry else {
        panic!("not the HTTP registry");
    };
    assert!(matches!(auth, RegistryAuth::Token(t) if t == "12345"));
    assert!(!format!("{config:?}").contains("12345"), "token in Debug");

    let error = setup.error(&format!("{HTTP_REGISTRY}token = \"s3cret\"\n"), &[]);
    assert!(
        error.contains("registry.token") && !error.contains("s3cret"),
        "{error}"
    );
    let error = setup.error(&with_file, &[("HELSEMELDING_REGISTRY_TOKEN", "x")]);
    assert!(error.contains("registry.token_file"), "{error}");
}

#[test]
fn the_http_registry_needs_the_cppa_url_and_a_sane_timeout() {
    let setup = Setup::new();
    let without_cppa =
        HTTP_REGISTRY.replace("cppa_url = \"https://cppa.test.grunndata.nhn.no\"\n", "");
    assert!(setup
        .error(&without_cppa, &[])
        .contains("registry.cppa_url"));
    let error = setup.error(&format!("{HTTP_REGISTRY}timeout_ms = 0\n"), &[]);
    assert!(error.contains("registry.timeout_ms"), "{error}");
    let error = setup.error(
        &HTTP_REGISTRY.replace("http://127.0.0.1:15672", "http://her:pw@127.0.0.1:15672"),
        &[],
    );
    assert!(
        error.contains("broker.management_url") && !error.contains("pw@"),
        "{error}"
    );
}

#[test]
fn several_her_ids_and_the_receive_and_send_switches() {
    let setup = Setup::new();
    let several = FULL.replace("her_id = 91462", "her_ids = [8141703, 8141705]")
        + "[receive]\nstrict_message_functions = true\nallow_party_mismatch = true\nallow_unprotected = true\nrevocation_unknown_for_seconds = 60\ndead_letters = \"store\"\nfault_pause_max_seconds = 5\n[send]\nasync_ttl_seconds = 345600\npayload_metadata = false\nextra_properties = { X-SystemIdentifier = \"EPJ\" }\noutbox_max_attempts = 5\n";
    let config = setup.load(&several, &[]).unwrap();
    assert_eq!(her_ids(&config), [8141703, 8141705]);
    assert_eq!(config.her_id.get(), 8141703, "the first sends by default");
    assert!(config.receive.strict_message_functions);
    assert!(config.receive.allow_party_mismatch);
    assert!(config.receive.allow_unprotected);
    assert_eq!(
        config.receive.revocation_unknown_for,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(config.receive.dead_letters, DeadLetterSetting::Store);
    assert_eq!(
        config.receive.fault_pause_max,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(
        config.send.async_ttl,
        Some(std::time::Duration::from_secs(345_600))
    );
    assert!(!config.send.payload_metadata);
    assert_eq!(config.send.outbox.max_attempts, 5);
    assert_eq!(
        config.send.extra_properties,
        [("X-SystemIdentifier".to_string(), "EPJ".to_string())]
    );

    let unknown = FULL.to_string() + "[receive]\ndead_letters = \"nowhere\"\n";
    let error = format!("{:#}", setup.load(&unknown, &[]).unwrap_err());
    assert!(
        error.contains("dead_letters") || error.contains("nowhere"),
        "{error}"
    );
    let never = FULL.to_string() + "[receive]\nfault_pause_max_seconds = 0\n";
    let error = format!("{:#}", setup.load(&never, &[]).unwrap_err());
    assert!(error.contains("receive.fault_pause_max_seconds"), "{error}");

    let both = FULL.replace("her_id = 91462", "her_id = 1\nher_ids = [2]");
    let error = format!("{:#}", setup.load(&both, &[]).unwrap_err());
    assert!(error.contains("either her_id or her_ids"), "{error}");
    let twice = FULL.replace("her_id = 91462", "her_ids = [5, 5]");
    let error = format!("{:#}", setup.load(&twice, &[]).unwrap_err());
    assert!(error.contains("listed twice"), "{error}");
    let shadowing = FULL.to_string() + "[send]\nextra_properties = { fromHerId = \"1\" }\n";
    let error = format!("{:#}", setup.load(&shadowing, &[]).unwrap_err());
    assert!(error.contains("send.extra_properties.fromHerId"), "{error}");
}

#[test]
fn the_bound_on_bytes_in_flight_is_in_mib_and_at_least_one() {
    let setup = Setup::new();
    let config = setup.load(FULL, &[]).unwrap();
    assert_eq!(config.receive.max_bytes_in_flight, 256 * 1024 * 1024);
    let bounded = FULL.to_string() + "[receive]\nmax_mib_in_flight = 64\n";
    let config = setup.load(&bounded, &[]).unwrap();
    assert_eq!(config.receive.max_bytes_in_flight, 64 * 1024 * 1024);
    let config = setup
        .load(FULL, &[("HELSEMELDING_RECEIVE_MAX_MIB_IN_FLIGHT", "1")])
        .unwrap();
    assert_eq!(config.receive.max_bytes_in_flight, 1024 * 1024);

    let nothing = FULL.to_string() + "[receive]\nmax_mib_in_flight = 0\n";
    let error = setup.error(&nothing, &[]);
    assert!(
        error.contains("key receive.max_mib_in_flight") && error.contains("at least 1"),
        "{error}"
    );
    let error = setup.error(FULL, &[("HELSEMELDING_RECEIVE_MAX_MIB_IN_FLIGHT", "0")]);
    assert!(error.contains("receive.max_mib_in_flight"), "{error}");
    let negative = FULL.to_string() + "[receive]\nmax_mib_in_flight = -5\n";
    let error = setup.error(&negative, &[]);
    assert!(error.contains("max_mib_in_flight"), "{error}");
    let beyond = format!("{FULL}[receive]\nmax_mib_in_flight = {}\n", u64::MAX >> 1);
    let error = setup.error(&beyond, &[]);
    assert!(error.contains("receive.max_mib_in_flight"), "{error}");
}

#[test]
fn a_registry_dir_that_does_not_exist_or_is_a_file_is_refused_naming_key_and_path() {
    let setup = Setup::new();
    let missing = setup.dir.path().join("nowhere");
    let text = FULL.replace("dir = \"registry\"", "dir = \"nowhere\"");
    let error = setup.error(&text, &[]);
    assert!(error.contains("key registry.dir"), "{error}");
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert!(error.contains("does not exist"), "{error}");
    assert!(error.contains("registry add --dir"), "{error}");

    let text = FULL.replace("dir = \"registry\"", "dir = \"ca.pem\"");
    let error = setup.error(&text, &[]);
    assert!(error.contains("key registry.dir"), "{error}");
    assert!(error.contains("is not a directory"), "{error}");
    assert!(
        error.contains(&setup.dir.path().join("ca.pem").display().to_string()),
        "{error}"
    );

    // Through the environment too, and an existing directory loads.
    let elsewhere = tempfile::tempdir().unwrap();
    let env_dir = elsewhere.path().to_str().unwrap();
    let config = setup
        .load(FULL, &[("HELSEMELDING_REGISTRY_DIR", env_dir)])
        .unwrap();
    assert!(matches!(&config.registry, Registry::Dir(d) if d == elsewhere.path()));
}

#[test]
fn every_library_setting_is_reachable_from_the_file() {
    let setup = Setup::new();
    let text = FULL.replace(
        "dialect = \"rabbitmq\"",
        "dialect = \"rabbitmq-v2\"\noperation_timeout_ms = 2500\nsend_retry_ms = 9000\nunavailable_after_ms = 4000\nreconnect_backoff_min_ms = 50\nreconnect_backoff_max_ms = 800",
    ) + "[receive]\nworkers = 12\ndelivery_limit = 3\nretry_backoff_min_ms = 200\nretry_backoff_max_ms = 2000\nheld_back_per_worker = 2\n[send]\noutbox_backoff_min_ms = 10\noutbox_backoff_max_ms = 20\n";
    let config = setup.load(&text, &[]).unwrap();
    let broker = &config.broker;
    assert_eq!(broker.dialect, Dialect::RabbitMqV2);
    assert_eq!(broker.operation_timeout, Duration::from_millis(2500));
    assert_eq!(broker.send_retry_for, Duration::from_secs(9));
    assert_eq!(broker.unavailable_after, Duration::from_secs(4));
    assert_eq!(broker.reconnect_backoff_min, Duration::from_millis(50));
    assert_eq!(broker.reconnect_backoff_max, Duration::from_millis(800));
    assert_eq!(config.receive.workers, 12);
    assert_eq!(config.receive.held_back_per_worker, 2);
    assert_eq!(
        config.receive.retry,
        RetryPolicy {
            delivery_limit: 3,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
        }
    );
    assert_eq!(config.send.outbox.backoff_min, Duration::from_millis(10));
    assert_eq!(config.send.outbox.backoff_max, Duration::from_millis(20));
}

#[test]
fn the_http_api_listens_on_loopback_unless_tls_and_allow_remote_say_otherwise() {
    let setup = Setup::new();
    std::fs::write(setup.dir.path().join("api.tokens"), b"x").unwrap();
    let with = |http: &str| format!("{FULL}[http]\n{http}");
    let config = setup
        .load(&with("token_file = \"api.tokens\"\n"), &[])
        .unwrap();
    let http = config.http.unwrap();
    assert_eq!(http.listen.to_string(), DEFAULT_LISTEN);
    assert!(http.token_file.ends_with("api.tokens") && http.tls.is_none());
    assert!(setup.load(FULL, &[]).unwrap().http.is_none());

    let error = setup.error(&with("listen = \"127.0.0.1:8095\"\n"), &[]);
    assert!(error.contains("http.token_file: missing"), "{error}");
    let error = setup.error(&with("token_file = \"nope.tokens\"\n"), &[]);
    assert!(
        error.contains("http.token_file") && error.contains("does not exist"),
        "{error}"
    );
    let error = setup.error(
        &with("listen = \"here\"\ntoken_file = \"api.tokens\"\n"),
        &[],
    );
    assert!(error.contains("key http.listen: \"here\""), "{error}");
    let remote = "listen = \"0.0.0.0:8095\"\ntoken_file = \"api.tokens\"\n";
    let error = setup.error(&with(remote), &[]);
    assert!(
        error.contains("not a loopback address") && error.contains("TLS"),
        "{error}"
    );
    let tls = format!("{remote}tls_cert = \"sign.pem\"\ntls_key = \"sign.key\"\n");
    let error = setup.error(&with(&tls), &[]);
    assert!(error.contains("allow_remote = true"), "{error}");
    let config = setup
        .load(&with(&format!("{tls}allow_remote = true\n")), &[])
        .unwrap();
    assert!(config.http.unwrap().tls.is_some());
    let error = setup.error(
        &with("token_file = \"api.tokens\"\ntls_cert = \"sign.pem\"\n"),
        &[],
    );
    assert!(error.contains("http.tls_key: missing"), "{error}");
    // The environment reaches the section like any other.
    let env = [("HELSEMELDING_HTTP_LISTEN", "127.0.0.1:9000")];
    let config = setup
        .load(&with("token_file = \"api.tokens\"\n"), &env)
        .unwrap();
    assert_eq!(config.http.unwrap().listen.port(), 9000);
}
