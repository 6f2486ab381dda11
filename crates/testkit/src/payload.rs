//! The payload the suites send: a MsgHead from one HER-id to another
//! around a short note, as one builder, so that every suite sends the same
//! document (and a change of the template is made once).
//!
//! ```
//! use helsemelding_testkit::payload::msghead;
//! let text = msghead(91462, 109989).note("Hei, æøå").ack().build();
//! assert!(text.contains("<Id>91462</Id>") && text.contains(r#"<Ack V="J" DN="Ja" />"#));
//! let fixed = msghead(91462, 109989).msg_id("2b1c7c86-64a4-4a38-a1b4-0f4f4b5d2c11").build();
//! assert!(fixed.contains("<MsgId>2b1c7c86-64a4-4a38-a1b4-0f4f4b5d2c11</MsgId>"));
//! ```

use std::fmt::Display;

/// The message function of the test MsgHead unless told otherwise.
pub const TEST_FUNCTION: &str = "DIALOG_INNBYGGER_TEST";

/// A MsgHead from `from` to `to`: function [`TEST_FUNCTION`], a fresh
/// MsgId, no AppRec asked for, the note `Hei, æøå`.
pub fn msghead(from: impl Display, to: impl Display) -> MsgHeadBuilder {
    MsgHeadBuilder {
        from: from.to_string(),
        to: to.to_string(),
        function: TEST_FUNCTION.to_owned(),
        msg_id: uuid::Uuid::new_v4().to_string(),
        ack: false,
        note: "Hei, æøå".to_owned(),
    }
}

/// A MsgHead to adjust and build: see [`msghead`].
#[derive(Debug, Clone)]
pub struct MsgHeadBuilder {
    from: String,
    to: String,
    function: String,
    msg_id: String,
    ack: bool,
    note: String,
}

impl MsgHeadBuilder {
    /// Its message function (`MsgInfo/Type/@V`).
    pub fn function(mut self, function: impl Into<String>) -> MsgHeadBuilder {
        self.function = function.into();
        self
    }

    /// Its MsgId instead of a fresh one.
    pub fn msg_id(mut self, msg_id: impl Into<String>) -> MsgHeadBuilder {
        self.msg_id = msg_id.into();
        self
    }

    /// Asks for an AppRec (`<Ack V="J">`).
    pub fn ack(mut self) -> MsgHeadBuilder {
        self.ack = true;
        self
    }

    /// The text of its note (not escaped: plain text only).
    pub fn note(mut self, note: impl Into<String>) -> MsgHeadBuilder {
        self.note = note.into();
        self
    }

    /// The document as text.
    pub fn build(&self) -> String {
        let MsgHeadBuilder {
            from,
            to,
            function,
            msg_id,
            ack,
            note,
        } = self;
        let ack = if *ack { r#"<Ack V="J" DN="Ja" />"# } else { "" };
        format!(
            r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">
  <MsgInfo>
    <Type V="{function}" DN="Test" />
    <MIGversion>v1.2 2006-05-24</MIGversion>
    <GenDate>2026-11-23T10:00:00Z</GenDate>
    <MsgId>{msg_id}</MsgId>{ack}
    <Sender><Organisation><OrganisationName>A</OrganisationName><Ident><Id>{from}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id" /></Ident></Organisation></Sender>
    <Receiver><Organisation><OrganisationName>B</OrganisationName><Ident><Id>{to}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id" /></Ident></Organisation></Receiver>
  </MsgInfo>
  <Document><RefDoc><MsgType V="XML" DN="XML-instans" /><Content><Note xmlns="urn:test">{note}</Note></Content></RefDoc></Document>
</MsgHead>"#
        )
    }

    /// The document as bytes (UTF-8).
    pub fn into_bytes(self) -> Vec<u8> {
        self.build().into_bytes()
    }
}
