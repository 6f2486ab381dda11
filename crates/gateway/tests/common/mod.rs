//! What the CLI tests that run `send` and `listen` share: the testkit's
//! party set-up with its CRL served on 127.0.0.1 (parties registered in a
//! file registry, one gateway configuration each), a MsgHead between two
//! parties, and running the real binary (whose path only this crate's
//! tests know).
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod served;

use std::path::{Path, PathBuf};
use std::process::Command;

use helsemelding_testkit::party::Parties;
pub use helsemelding_testkit::party::{GatewayBroker, BROKER_PASSWORD_ENV};
use helsemelding_testkit::payload;

/// The parties of one CLI test and the broker their configurations name.
pub struct Setup {
    pub parties: Parties,
    pub broker: GatewayBroker,
}

impl Setup {
    pub fn new(broker: GatewayBroker) -> Setup {
        // Revocation is required, as by default: every certificate names the
        // CRL served here, which revokes nothing.
        let parties = Parties::builder()
            .ca_name("cli test CA")
            .serve_crl()
            .build();
        Setup { parties, broker }
    }

    /// The test directory.
    pub fn dir(&self) -> &Path {
        self.parties.dir()
    }

    /// Issues `her_id`'s certificates, registers the party and writes its
    /// configuration file; returns the file's path.
    pub fn party(&self, her_id: u32) -> PathBuf {
        let party = self.parties.party(her_id).register();
        self.parties
            .gateway_config(&party)
            .broker(&self.broker)
            .write()
    }

    /// The party's store, as its configuration names it.
    pub fn store_path(&self, her_id: u32) -> PathBuf {
        self.parties.store_path(&her_id.to_string())
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

/// A MsgHead from `from` to `to` around a short note with Norwegian
/// letters; always the same MsgId.
pub fn msghead(from: u32, to: u32) -> String {
    payload::msghead(from, to)
        .msg_id("2b1c7c86-64a4-4a38-a1b4-0f4f4b5d2c11")
        .build()
}

/// How many times `listen`'s stderr says it handed `message_id` over.
pub fn hand_overs(listen_stderr: &str, message_id: &str) -> usize {
    let prefix = format!("received {message_id} ");
    listen_stderr
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .count()
}
