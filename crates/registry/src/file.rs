//! The embedded file registry: the default for development, the demo and
//! the tests, with the same answers as NHN's services.
//!
//! Layout of the directory:
//!
//! ```text
//! parties/<her-id>/party.json | party.xml   address record (REST JSON or SOAP XML form)
//! parties/<her-id>/signing.pem               current signing certificate
//! parties/<her-id>/encryption.pem            current encryption certificate
//! parties/<her-id>/previous/{signing,encryption}.pem   previous pair (rotation), optional
//! parties/<her-id>/cpp.xml                   CPP, optional
//! cpas/<cpa-id>.xml                          CPAs
//! ```
//!
//! Real NHN documents are stored unchanged; every write goes to a temporary
//! file that is then renamed over the target, so readers never see half a
//! file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use helsemelding_protect::Certificate;

use crate::certificates::PartyCertificates;
use crate::cppa::{parse_collaboration_document, CollaborationDocument, ProfileKind};
use crate::party::{parse_communication_party, to_rest_json, AmqpTransportStatus, QueueAddresses};
use crate::{check_cpa_id, CommunicationParty, Error, HerId, Registry, Result};

/// A registry kept in a directory.
#[derive(Clone, Debug)]
pub struct FileRegistry {
    dir: PathBuf,
}

/// A party to create with [`FileRegistry::add_party`].
#[derive(Clone, Debug)]
pub struct NewParty {
    /// HER-id.
    pub her_id: HerId,
    /// Name.
    pub name: String,
    /// Signing certificate (nonRepudiation).
    pub signing_certificate: Certificate,
    /// Encryption certificate (keyEncipherment).
    pub encryption_certificate: Certificate,
    /// The party's CPP (XML bytes), if any.
    pub cpp: Option<Vec<u8>>,
    /// Queue name prefix: queues are `<prefix>_async` etc.; `None` means the
    /// HER-id (`<her-id>_async`, as on NHN's bus).
    pub queue_prefix: Option<String>,
}

/// What [`FileRegistry::import`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Imported {
    /// An address record for this party.
    Party(HerId),
    /// The CPP of this party.
    Cpp(HerId),
    /// The CPA with this id.
    Cpa(String),
}

/// A document [`FileRegistry::import`] takes, as read from its bytes.
#[derive(Clone, Debug)]
pub enum ImportDocument {
    /// A CPP or a CPA.
    Collaboration(CollaborationDocument),
    /// An address record.
    Party(CommunicationParty),
}

impl ImportDocument {
    /// Reads a CPP, a CPA or an address record (SOAP XML or REST JSON),
    /// told apart by content.
    pub fn read(bytes: &[u8]) -> Result<ImportDocument> {
        match parse_collaboration_document(bytes) {
            Ok(document) => return Ok(ImportDocument::Collaboration(document)),
            Err(Error::UnexpectedDocument { .. } | Error::Xml { .. }) => {}
            Err(other) => return Err(other),
        }
        parse_communication_party(bytes).map(ImportDocument::Party)
    }

    /// What importing it stores: its party's record or CPP, or the CPA.
    pub fn target(&self) -> Result<Imported> {
        let document = match self {
            ImportDocument::Party(record) => return Ok(Imported::Party(record.her_id)),
            ImportDocument::Collaboration(document) => document,
        };
        match document.kind {
            ProfileKind::Cpp => Ok(Imported::Cpp(document.parties[0].her_id)),
            ProfileKind::Cpa => {
                let id = document.id.clone().ok_or_else(|| Error::Missing {
                    element: "cpaid",
                    party: document.parties[0].her_id.to_string(),
                })?;
                Ok(Imported::Cpa(id))
            }
        }
    }
}

impl FileRegistry {
    /// A registry in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileRegistry { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn party_dir(&self, her_id: HerId) -> PathBuf {
        self.dir.join("parties").join(her_id.to_string())
    }

    fn cpa_path(&self, cpa_id: &str) -> Result<PathBuf> {
        Ok(self
            .dir
            .join("cpas")
            .join(format!("{}.xml", check_cpa_id(cpa_id)?)))
    }

    /// Create (or replace) a party with its certificates and optional CPP.
    pub fn add_party(&self, party: &NewParty) -> Result<CommunicationParty> {
        if let Some(cpp) = &party.cpp {
            let document = parse_collaboration_document(cpp)?;
            if document.kind != ProfileKind::Cpp || document.party(party.her_id).is_none() {
                return Err(Error::Invalid {
                    element: "CPP",
                    value: "not a CPP of this party".into(),
                    party: party.her_id.to_string(),
                });
            }
        }
        let prefix = party
            .queue_prefix
            .clone()
            .unwrap_or_else(|| party.her_id.to_string());
        let record = CommunicationParty {
            her_id: party.her_id,
            name: party.name.clone(),
            parent_her_id: None,
            party_type: Some("Service".into()),
            active: true,
            queues: QueueAddresses {
                async_queue: Some(format!("{prefix}_async")),
                sync: Some(format!("{prefix}_sync")),
                error: Some(format!("{prefix}_error")),
                syncreply: Some(format!("{prefix}_syncreply")),
            },
            amqp_transport_status: Some(AmqpTransportStatus::Enabled),
            certificate_ldap_url: None,
        };
        let dir = self.party_dir(party.her_id);
        let json = serde_json::to_vec_pretty(&to_rest_json(&record)).expect("JSON of a record");
        write_atomic(&dir.join("party.json"), &json)?;
        remove_if_present(&dir.join("party.xml"))?;
        write_atomic(
            &dir.join("signing.pem"),
            &party.signing_certificate.to_pem(),
        )?;
        write_atomic(
            &dir.join("encryption.pem"),
            &party.encryption_certificate.to_pem(),
        )?;
        if let Some(cpp) = &party.cpp {
            write_atomic(&dir.join("cpp.xml"), cpp)?;
        }
        Ok(record)
    }

    /// Store a real NHN document unchanged, detected by its content: a CPP,
    /// a CPA, or an address record (SOAP XML or REST JSON).
    pub fn import(&self, bytes: &[u8]) -> Result<Imported> {
        self.import_document(&ImportDocument::read(bytes)?, bytes)
    }

    /// [`FileRegistry::import`] of a document already read from `bytes`
    /// (by [`ImportDocument::read`]), for a caller that judged it first.
    pub fn import_document(&self, document: &ImportDocument, bytes: &[u8]) -> Result<Imported> {
        let target = document.target()?;
        match &target {
            Imported::Party(her_id) => {
                let dir = self.party_dir(*her_id);
                let (keep, drop) = if is_json(bytes) {
                    ("party.json", "party.xml")
                } else {
                    ("party.xml", "party.json")
                };
                write_atomic(&dir.join(keep), bytes)?;
                remove_if_present(&dir.join(drop))?;
            }
            Imported::Cpp(her_id) => {
                write_atomic(&self.party_dir(*her_id).join("cpp.xml"), bytes)?;
            }
            Imported::Cpa(id) => write_atomic(&self.cpa_path(id)?, bytes)?,
        }
        Ok(target)
    }

    /// The bytes stored where `target` would be imported to, if any (for
    /// an address record, whichever form is there).
    pub fn stored(&self, target: &Imported) -> Result<Option<Vec<u8>>> {
        let paths = match target {
            Imported::Party(her_id) => {
                let dir = self.party_dir(*her_id);
                vec![dir.join("party.json"), dir.join("party.xml")]
            }
            Imported::Cpp(her_id) => vec![self.party_dir(*her_id).join("cpp.xml")],
            Imported::Cpa(id) => vec![self.cpa_path(id)?],
        };
        for path in paths {
            if let Some(bytes) = read_if_present(&path)? {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    /// The address record of a party.
    pub fn party(&self, her_id: HerId) -> Result<CommunicationParty> {
        let dir = self.party_dir(her_id);
        for name in ["party.json", "party.xml"] {
            if let Some(bytes) = read_if_present(&dir.join(name))? {
                return parse_communication_party(&bytes);
            }
        }
        Err(Error::NotFound {
            what: "communication party",
            key: her_id.to_string(),
        })
    }

    /// The party's certificates: the PEM files, else those in its CPP.
    pub fn party_certificates(&self, her_id: HerId) -> Result<PartyCertificates> {
        let dir = self.party_dir(her_id);
        let mut certificates = PartyCertificates::default();
        for pair in [dir.clone(), dir.join("previous")] {
            if let Some(c) = read_certificate(&pair.join("signing.pem"))? {
                certificates.signing.push(c);
            }
            if let Some(c) = read_certificate(&pair.join("encryption.pem"))? {
                certificates.encryption.push(c);
            }
        }
        if certificates.signing.is_empty() && certificates.encryption.is_empty() {
            if let Some(cpp) = self.load_cpp(her_id)? {
                if let Some(party) = cpp.party(her_id) {
                    certificates
                        .signing
                        .extend(party.signing_certificate.clone());
                    certificates
                        .encryption
                        .extend(party.encryption_certificate.clone());
                }
            }
        }
        if certificates.signing.is_empty() && certificates.encryption.is_empty() {
            return Err(Error::NotFound {
                what: "certificates",
                key: her_id.to_string(),
            });
        }
        Ok(certificates)
    }

    /// The party's CPP, if stored.
    pub fn load_cpp(&self, her_id: HerId) -> Result<Option<CollaborationDocument>> {
        read_if_present(&self.party_dir(her_id).join("cpp.xml"))?
            .map(|bytes| parse_collaboration_document(&bytes))
            .transpose()
    }

    /// The CPA with this id, if stored.
    pub fn load_cpa(&self, cpa_id: &str) -> Result<Option<CollaborationDocument>> {
        read_if_present(&self.cpa_path(cpa_id)?)?
            .map(|bytes| parse_collaboration_document(&bytes))
            .transpose()
    }

    /// The CPA between two parties; when several exist, the one that starts
    /// latest.
    pub fn find_cpa(&self, a: HerId, b: HerId) -> Result<Option<CollaborationDocument>> {
        let dir = self.dir.join("cpas");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut best: Option<CollaborationDocument> = None;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("xml") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let document = parse_collaboration_document(&bytes)?;
            let covers = document.party(a).is_some() && document.party(b).is_some();
            if covers && best.as_ref().is_none_or(|b| document.start > b.start) {
                best = Some(document);
            }
        }
        Ok(best)
    }
}

#[async_trait::async_trait]
impl Registry for FileRegistry {
    async fn communication_party(&self, her_id: HerId) -> Result<CommunicationParty> {
        self.party(her_id)
    }

    async fn certificates(&self, her_id: HerId) -> Result<PartyCertificates> {
        self.party_certificates(her_id)
    }

    async fn cpp(&self, her_id: HerId) -> Result<Option<Arc<CollaborationDocument>>> {
        Ok(self.load_cpp(her_id)?.map(Arc::new))
    }

    async fn cpa_by_id(&self, cpa_id: &str) -> Result<Option<Arc<CollaborationDocument>>> {
        Ok(self.load_cpa(cpa_id)?.map(Arc::new))
    }

    async fn cpa_for(
        &self,
        ours: HerId,
        theirs: HerId,
    ) -> Result<Option<Arc<CollaborationDocument>>> {
        Ok(self.find_cpa(ours, theirs)?.map(Arc::new))
    }
}

fn read_certificate(path: &Path) -> Result<Option<Certificate>> {
    read_if_present(path)?
        .map(|bytes| {
            Certificate::from_pem_or_der(&bytes).map_err(|source| Error::Certificate {
                party: path.display().to_string(),
                cert_id: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                source,
            })
        })
        .transpose()
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Whether an address record is the REST JSON form (the SOAP form is XML).
fn is_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF)
        == Some(&b'{')
}

/// Write to a temporary file beside the target, then rename it over the
/// target: readers see the old or the new file, never a mix.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("registry paths have a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let temporary = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(Error::io(path, e));
    }
    Ok(())
}
