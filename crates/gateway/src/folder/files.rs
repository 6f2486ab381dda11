//! Files as the folder drop writes and moves them: names built only of
//! safe characters, writes that are complete or absent (temporary name,
//! sync, rename, directory sync), and moves that never overwrite.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest MsgId kept in a file name; longer ones are cut (the full id
/// is in the `.json` or `.error.json` beside the file).
const MAX_ID_CHARS: usize = 100;

/// `text` with everything but ASCII letters, digits, `-` and `.` made `_`,
/// cut to a length every file system takes: a MsgId or a file stem from a
/// peer or an EHR never reaches the file system raw (no `/`, no `..`).
pub fn safe_name(text: &str) -> String {
    let safe: String = text
        .chars()
        .take(MAX_ID_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // No hidden files, no `.` or `..`.
    let safe = safe.trim_start_matches('.').to_owned();
    if safe.is_empty() {
        "_".to_owned()
    } else {
        safe
    }
}

/// The stem of an EHR's file name (`note-7` of `note-7.xml`), made safe.
pub fn stem_of(path: &Path) -> String {
    safe_name(
        &path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

/// Writes `bytes` to `path` completely or not at all: a temporary name
/// beside it, synced, renamed, and the directory synced so that the
/// rename survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("part");
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        sync_dir_of(path)
    })();
    if written.is_err() {
        // Never leave a half-written file behind.
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

fn sync_dir_of(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// Moves `from` into `dir` as `name`, or as `name` with `-2`, `-3`, … before
/// its extension when that is taken: nothing already there is replaced.
/// Returns where it went. Both must be on one file system (they are: one
/// tree per HER-id).
pub fn move_into(from: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) => (stem.to_owned(), format!(".{extension}")),
        None => (name.to_owned(), String::new()),
    };
    for n in 1u32.. {
        let candidate = if n == 1 {
            dir.join(name)
        } else {
            dir.join(format!("{stem}-{n}{extension}"))
        };
        // A hard link fails when the target exists, where a rename would
        // replace it: link, then remove the old name.
        match std::fs::hard_link(from, &candidate) {
            Ok(()) => {
                std::fs::remove_file(from)?;
                sync_dir_of(&candidate)?;
                sync_dir_of(from)?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("moving {} to {}: {e}", from.display(), candidate.display()),
                ))
            }
        }
    }
    unreachable!("u32 names run out before a directory does")
}

/// The files directly in `dir` whose names end with one of `extensions`
/// (`.xml`, any case), hidden and temporary ones left out, in name order.
pub fn listed(dir: &Path, extensions: &[&str]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("reading {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        if name.starts_with('.') || !extensions.iter().any(|ext| name.ends_with(ext)) {
            continue;
        }
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_outside_never_reach_the_file_system_raw() {
        assert_eq!(safe_name("8325fcc2-89a9-11e3"), "8325fcc2-89a9-11e3");
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_name(".."), "_");
        assert_eq!(safe_name(""), "_");
        assert_eq!(safe_name("a b\nc\u{1b}[31m"), "a_b_c__31m");
        assert_eq!(safe_name(&"x".repeat(500)).len(), MAX_ID_CHARS);
    }

    #[test]
    fn a_move_never_replaces_a_file_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("SENT");
        std::fs::create_dir(&target).unwrap();
        for n in 0..3 {
            let from = dir.path().join(format!("w{n}"));
            std::fs::write(&from, format!("content {n}")).unwrap();
            let to = move_into(&from, &target, "note_m-1.xml").unwrap();
            assert!(!from.exists());
            assert_eq!(
                std::fs::read_to_string(&to).unwrap(),
                format!("content {n}")
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["note_m-1-2.xml", "note_m-1-3.xml", "note_m-1.xml"]);
    }

    #[test]
    fn an_atomic_write_leaves_no_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert!(!dir.path().join("a.part").exists());
        let missing = dir.path().join("no-such-dir").join("b.json");
        let error = write_atomic(&missing, b"{}").unwrap_err();
        assert!(error.to_string().contains("b.json"), "{error}");
    }
}
