//! Text from peers, made safe to print or log.
//!
//! Whatever a peer controls (an error report's description, a message-id,
//! a message function, a broker's reason) may hold newlines that forge
//! lines of our output, terminal escapes that clear the screen or recolour
//! it, bidirectional overrides that reorder what an operator reads, or a
//! megabyte of text. [`for_display`] shows such characters as escapes
//! instead of obeying them and cuts the text to a bound, saying how long
//! it was.

use std::fmt::Write as _;

/// `text` as one line that is safe on a terminal and in a log, of at most
/// `max_chars` characters before the cut marker.
///
/// - `\n`, `\r`, `\t` and `\\` are written as those two-character escapes
///   (the backslash too, so that a peer cannot pass a literal `\n` off as
///   an escaped newline);
/// - other control characters (C0, DEL, C1) as `\x1b` or `\u{85}`;
/// - invisible format characters that change how a line reads (bidi
///   overrides and isolates, zero-width characters, line and paragraph
///   separators, the byte-order mark) as `\u{202e}`;
/// - everything else as it is.
///
/// Longer results end after at most `max_chars` characters (never inside
/// an escape) with `… (N bytes)`, N being the length of the whole `text`.
pub fn for_display(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars) + 16);
    let mut shown = 0usize;
    let mut escaped = String::new();
    for c in text.chars() {
        escaped.clear();
        escape_char(c, &mut escaped);
        let width = escaped.chars().count();
        if shown + width > max_chars {
            let _ = write!(out, "… ({} bytes)", text.len());
            return out;
        }
        out.push_str(&escaped);
        shown += width;
    }
    out
}

/// [`for_display`] of an optional text; `absent` when there is none.
pub fn for_display_or(text: Option<&str>, max_chars: usize, absent: &str) -> String {
    match text {
        Some(text) => for_display(text, max_chars),
        None => absent.to_owned(),
    }
}

/// Whether [`for_display`] shows `c` as an escape because it is a control
/// character or an invisible format character (the backslash, escaped
/// only to keep escapes unambiguous, is not one). Names and other text
/// that we store and show later should not hold such characters at all.
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

fn escape_char(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\\' => out.push_str("\\\\"),
        c if c.is_ascii_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() || is_invisible_format(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Format characters (Unicode category Cf and the line separators) that
/// are invisible but change how the surrounding text is shown.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0xE0000..=0xE0FFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_unchanged() {
        assert_eq!(for_display("Hei, æøå – ok 123", 200), "Hei, æøå – ok 123");
        assert_eq!(for_display("", 200), "");
    }

    #[test]
    fn a_forged_line_stays_on_one_line() {
        let hostile = "bad\n received FAKE-ID from 109989 (1)\r\n";
        let shown = for_display(hostile, 200);
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
        assert_eq!(shown, "bad\\n received FAKE-ID from 109989 (1)\\r\\n");
    }

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        let shown = for_display("x\x1b[2J\x1b]0;title\x07\x7f\u{9b}31m", 200);
        assert_eq!(shown, "x\\x1b[2J\\x1b]0;title\\x07\\x7f\\u{9b}31m");
        assert!(shown.chars().all(|c| !c.is_control()));
    }

    #[test]
    fn bidi_overrides_and_invisible_characters_are_shown() {
        let shown = for_display("abc\u{202e}fed\u{2066}\u{200b}\u{feff}\u{2028}", 200);
        assert_eq!(shown, "abc\\u{202e}fed\\u{2066}\\u{200b}\\u{feff}\\u{2028}");
    }

    #[test]
    fn a_literal_backslash_cannot_pass_for_an_escape() {
        assert_eq!(for_display("a\\nb", 200), "a\\\\nb");
        assert_ne!(for_display("a\\nb", 200), for_display("a\nb", 200));
    }

    #[test]
    fn long_text_is_cut_and_its_length_said() {
        let big = "A".repeat(1 << 20);
        let shown = for_display(&big, 200);
        assert_eq!(shown, format!("{}… (1048576 bytes)", "A".repeat(200)));
        // Exactly at the bound: nothing cut.
        assert_eq!(for_display(&"b".repeat(200), 200), "b".repeat(200));
        assert_eq!(for_display("æøå", 2), "æø… (6 bytes)");
    }

    #[test]
    fn the_cut_never_splits_an_escape() {
        let shown = for_display("abc\x1bdef", 5);
        assert_eq!(shown, "abc… (7 bytes)");
        let shown = for_display(&"\n".repeat(1000), 9);
        assert_eq!(shown, "\\n\\n\\n\\n… (1000 bytes)");
    }

    #[test]
    fn every_control_character_is_escaped() {
        let all: String = (0u32..0x110000).filter_map(char::from_u32).collect();
        let shown = for_display(&all, usize::MAX);
        assert!(shown
            .chars()
            .all(|c| !c.is_control() && !is_invisible_format(c)));
    }

    #[test]
    fn hidden_and_control_characters_are_told_apart_from_text() {
        for c in ['\n', '\x1b', '\u{9b}', '\u{202e}', '\u{200b}', '\u{feff}'] {
            assert!(is_hidden_or_control(c), "{c:?}");
        }
        for c in ['a', 'æ', ' ', '\\', '–', '€'] {
            assert!(!is_hidden_or_control(c), "{c:?}");
        }
    }

    #[test]
    fn absent_text_has_its_own_word() {
        assert_eq!(for_display_or(None, 10, "unknown"), "unknown");
        assert_eq!(for_display_or(Some("a\nb"), 10, "unknown"), "a\\nb");
    }
}
