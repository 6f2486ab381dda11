//! What the CLI tests that run `send` and `listen` share: parties with
//! generated certificates (CRL distribution point served on 127.0.0.1) in
//! a file registry, a configuration file per party, a MsgHead between two
//! parties, and running the real binary.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::Command;

use helsemelding_protect::Certificate;
use helsemelding_registry::file::NewParty;
use helsemelding_registry::FileRegistry;
use helsemelding_testkit::broker::Broker;
use helsemelding_testkit::pki::{LeafOptions, TestPki, Usage};

/// The environment variable the gateway reads the broker password from.
pub const BROKER_PASSWORD_ENV: &str = "HELSEMELDING_BROKER_PASSWORD";

/// The `[broker]` section of a party's configuration.
pub enum BrokerSection {
    /// The local transport, a SQLite file in the test directory.
    Local,
    /// The private RabbitMQ: its URL without the password (which the
    /// gateway takes from [`BROKER_PASSWORD_ENV`] only).
    RabbitMq(Broker),
}

impl BrokerSection {
    fn toml(&self, dir: &Path) -> String {
        match self {
            BrokerSection::Local => format!("url = \"local:{}/queues.db\"\n", dir.display()),
            BrokerSection::RabbitMq(broker) => {
                let mut url = url::Url::parse(broker.amqp_url()).unwrap();
                url.set_password(None).unwrap();
                url.set_path(broker.exchange());
                format!("url = \"{url}\"\n")
            }
        }
    }

    /// The password the gateway must be given, if any.
    pub fn password(&self) -> Option<String> {
        match self {
            BrokerSection::Local => None,
            BrokerSection::RabbitMq(broker) => Some(broker.credentials().1.to_owned()),
        }
    }
}

/// The parties' common ground: a test PKI, its CRL served on 127.0.0.1,
/// the file registry, the broker section.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub pki: TestPki,
    pub registry: FileRegistry,
    pub crl_url: String,
    pub broker: BrokerSection,
}

impl Setup {
    pub fn new(broker: BrokerSection) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new("cli test CA");
        std::fs::write(dir.path().join("ca.pem"), pki.ca.cert.to_pem().unwrap()).unwrap();
        let registry = FileRegistry::new(dir.path().join("registry"));
        // Revocation is required, as by default: every certificate names a CRL
        // served here, which revokes nothing.
        let next_update = chrono::Utc::now() + chrono::Duration::days(1);
        let crl_url = serve_crl(pki.crl(&[], next_update).to_der().unwrap());
        Setup {
            dir,
            pki,
            registry,
            crl_url,
            broker,
        }
    }

    /// Issues `her_id`'s certificates, registers the party and writes its
    /// configuration file; returns the file's path.
    pub fn party(&self, her_id: u32) -> PathBuf {
        let dir = self.dir.path();
        let options = LeafOptions {
            crl_url: Some(self.crl_url.clone()),
            ..LeafOptions::default()
        };
        let pki = &self.pki;
        let signing = pki.issue_with(&format!("{her_id} signing"), Usage::Signing, &options);
        let encryption =
            pki.issue_with(&format!("{her_id} encryption"), Usage::Encryption, &options);
        let (sign_cert, sign_key) = signing.write_pem(dir, &format!("{her_id}-sign"));
        let (enc_cert, enc_key) = encryption.write_pem(dir, &format!("{her_id}-enc"));
        self.registry
            .add_party(&NewParty {
                her_id,
                name: format!("party {her_id}"),
                signing_certificate: Certificate::from_x509(signing.cert.clone()),
                encryption_certificate: Certificate::from_x509(encryption.cert.clone()),
                cpp: None,
                queue_prefix: None,
            })
            .unwrap();
        let d = dir.display();
        let config = format!(
            r#"her_id = {her_id}
[broker]
{broker}[identity]
signing_cert = "{}"
signing_key = "{}"
decryption_cert = "{}"
decryption_key = "{}"
[registry]
dir = "{d}/registry"
[trust]
anchors = ["{d}/ca.pem"]
revocation = "require"
[store]
path = "{d}/{her_id}.db"
"#,
            sign_cert.display(),
            sign_key.display(),
            enc_cert.display(),
            enc_key.display(),
            broker = self.broker.toml(dir),
        );
        let path = dir.join(format!("{her_id}.toml"));
        std::fs::write(&path, config).unwrap();
        path
    }

    /// The party's store, as its configuration names it.
    pub fn store_path(&self, her_id: u32) -> PathBuf {
        self.dir.path().join(format!("{her_id}.db"))
    }

    /// `helsemelding --config CONFIG`, with the broker password in its
    /// environment when the broker needs one.
    pub fn command(&self, config: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_helsemelding"));
        command.arg("--config").arg(config);
        command.env_remove(BROKER_PASSWORD_ENV);
        if let Some(password) = self.broker.password() {
            command.env(BROKER_PASSWORD_ENV, password);
        }
        command
    }

    /// Runs `listen` for `config` into `out` until it has been idle for
    /// 3 s; returns its stderr, which names each hand-over.
    pub fn listen_until_idle(&self, config: &Path, out: &Path) -> String {
        let out = out.to_str().unwrap();
        let (ok, _, stderr) = self.run(config, &["listen", "--out-dir", out, "--idle-exit", "3"]);
        assert!(ok, "listen failed: {stderr}");
        stderr
    }

    /// Runs `helsemelding --config CONFIG ARGS` to the end: success, stdout, stderr.
    pub fn run(&self, config: &Path, args: &[&str]) -> (bool, String, String) {
        let output = self.command(config).args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }
}

/// A MsgHead from `from` to `to` around a short note with Norwegian letters.
pub fn msghead(from: u32, to: u32) -> String {
    format!(
        r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">
  <MsgInfo>
    <Type V="DIALOG_INNBYGGER_TEST" DN="Test" />
    <MIGversion>v1.2 2006-05-24</MIGversion>
    <GenDate>2026-11-23T10:00:00Z</GenDate>
    <MsgId>2b1c7c86-64a4-4a38-a1b4-0f4f4b5d2c11</MsgId>
    <Sender><Organisation><OrganisationName>A</OrganisationName><Ident><Id>{from}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id" /></Ident></Organisation></Sender>
    <Receiver><Organisation><OrganisationName>B</OrganisationName><Ident><Id>{to}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id" /></Ident></Organisation></Receiver>
  </MsgInfo>
  <Document><RefDoc><MsgType V="XML" DN="XML-instans" /><Content><Note xmlns="urn:test">Hei, æøå</Note></Content></RefDoc></Document>
</MsgHead>"#
    )
}

/// Serves `crl` (DER) to every request on 127.0.0.1 for the rest of the
/// test process; returns its URL.
pub fn serve_crl(crl: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ca.crl", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/pkix-crl\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                crl.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&crl);
        }
    });
    url
}

/// How many times `listen`'s stderr says it handed `message_id` over.
pub fn hand_overs(listen_stderr: &str, message_id: &str) -> usize {
    let prefix = format!("received {message_id} ");
    listen_stderr
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .count()
}
