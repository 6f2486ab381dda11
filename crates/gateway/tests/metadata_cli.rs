//! `helsemelding metadata FILE --json` on the reference library's fixtures.

use std::process::Command;

use helsemelding_testkit::fixtures::nhn;

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(args)
        .output()
        .expect("running helsemelding")
}

#[test]
fn prints_reference_metadata_as_json() {
    let file = nhn("messages/MetadataTestsDialogmelding11.xml");
    let output = run(&["metadata".as_ref(), file.as_os_str(), "--json".as_ref()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let object = json.as_object().unwrap();
    assert_eq!(object.len(), 12);
    assert_eq!(json["X-MessageInfo-Type"], "DIALOG_HELSEFAGLIG");
    assert_eq!(json["X-AttachmentInfo-TotalSizeInBytes"], "218");
    assert_eq!(json["X-AttachmentInfo-HasExternalReference"], "True");
    assert_eq!(json["X-Receiver-Lvl2Id"], "90998");
}

#[test]
fn refuses_non_xml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junk.xml");
    std::fs::write(&file, b"not xml at all").unwrap();
    let output = run(&["metadata".as_ref(), file.as_os_str()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not well-formed XML"), "{stderr}");
}

/// Output into a pipe nobody reads any more ends the command quietly: no
/// panic message from the standard library.
#[test]
fn a_closed_output_pipe_ends_the_command_without_a_panic() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args([
            "metadata",
            "--json",
            helsemelding_testkit::fixtures::nhn("messages/MetadataTestsDialogmelding11.xml")
                .to_str()
                .unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
