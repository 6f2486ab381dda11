//! The reference library's event codes, for log and alert parity.
//!
//! NHN's library logs each notable event with a code (`MUG-0000xx` for
//! messaging, `REG-00000x` for registries). We log the same code beside our
//! own so that operators' alerts written for the reference keep working.

use std::fmt;

/// An event code of the reference library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventCode {
    /// REG-000001: communication details not found.
    CommunicationDetailsNotFound,
    /// REG-000002: CPP not found.
    CppNotFound,
    /// REG-000003: CPA not found.
    CpaNotFound,
    /// MUG-000001: receive failed.
    ReceiveFailed,
    /// MUG-000002: send failed.
    SendFailed,
    /// MUG-000003: empty queue name.
    EmptyQueueName,
    /// MUG-000004: sender not in the address registry.
    SenderNotInRegistry,
    /// MUG-000010: several problems with the sender's certificate.
    RemoteCertificateMultiple,
    /// MUG-000011: sender's certificate not yet valid.
    RemoteCertificateStartDate,
    /// MUG-000012: sender's certificate expired.
    RemoteCertificateEndDate,
    /// MUG-000013: sender's certificate revoked.
    RemoteCertificateRevocation,
    /// MUG-000014: sender's certificate has the wrong key usage.
    RemoteCertificateUsage,
    /// MUG-000015: several problems with our certificate.
    LocalCertificateMultiple,
    /// MUG-000016: our certificate not yet valid.
    LocalCertificateStartDate,
    /// MUG-000017: our certificate expired.
    LocalCertificateEndDate,
    /// MUG-000018: our certificate revoked.
    LocalCertificateRevocation,
    /// MUG-000019: our certificate has the wrong key usage.
    LocalCertificateUsage,
    /// MUG-000020: payload is not XML.
    NotXml,
    /// MUG-000021: missing header data.
    MissingHeaderData,
    /// MUG-000022: header and payload disagree.
    HeaderPayloadMismatch,
    /// MUG-000023: the application reported an error to the sender.
    ApplicationReportedError,
    /// MUG-000030: sync call timed out.
    SyncTimeout,
    /// MUG-000031: sync reply arrived too late.
    LateSyncReply,
    /// MUG-000033: invalid message function.
    InvalidMessageFunction,
    /// MUG-000034: an error report arrived on our error queue.
    ErrorReportReceived,
    /// MUG-000035: unknown error.
    UnknownError,
    /// MUG-000040: invalid HER-id.
    InvalidHerId,
}

impl EventCode {
    /// The code as the reference library logs it, e.g. `MUG-000021`.
    pub const fn code(self) -> &'static str {
        use EventCode::*;
        match self {
            CommunicationDetailsNotFound => "REG-000001",
            CppNotFound => "REG-000002",
            CpaNotFound => "REG-000003",
            ReceiveFailed => "MUG-000001",
            SendFailed => "MUG-000002",
            EmptyQueueName => "MUG-000003",
            SenderNotInRegistry => "MUG-000004",
            RemoteCertificateMultiple => "MUG-000010",
            RemoteCertificateStartDate => "MUG-000011",
            RemoteCertificateEndDate => "MUG-000012",
            RemoteCertificateRevocation => "MUG-000013",
            RemoteCertificateUsage => "MUG-000014",
            LocalCertificateMultiple => "MUG-000015",
            LocalCertificateStartDate => "MUG-000016",
            LocalCertificateEndDate => "MUG-000017",
            LocalCertificateRevocation => "MUG-000018",
            LocalCertificateUsage => "MUG-000019",
            NotXml => "MUG-000020",
            MissingHeaderData => "MUG-000021",
            HeaderPayloadMismatch => "MUG-000022",
            ApplicationReportedError => "MUG-000023",
            SyncTimeout => "MUG-000030",
            LateSyncReply => "MUG-000031",
            InvalidMessageFunction => "MUG-000033",
            ErrorReportReceived => "MUG-000034",
            UnknownError => "MUG-000035",
            InvalidHerId => "MUG-000040",
        }
    }
}

impl fmt::Display for EventCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(EventCode::CpaNotFound.to_string(), "REG-000003");
        assert_eq!(EventCode::MissingHeaderData.code(), "MUG-000021");
        assert_eq!(EventCode::InvalidHerId.code(), "MUG-000040");
        assert_eq!(EventCode::SyncTimeout.code(), "MUG-000030");
    }
}
