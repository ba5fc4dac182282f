//! Field delimiters: parsing the command-line spelling, and suggesting one
//! for a file that was read with the wrong delimiter.

/// Accepted spellings, appended to every error of [`parse_delimiter`].
const ACCEPTED: &str =
    "use one ASCII character such as ';' or '|', or one of the names tab, comma, semicolon, space and pipe";

/// Delimiters that [`suggest_delimiter`] looks for, in order of preference
/// when two occur equally often.
const COMMON_DELIMITERS: [u8; 4] = [b';', b'\t', b',', b'|'];

/// Parses a field delimiter as a user types it on the command line.
///
/// Accepts one ASCII character, such as `;` or `|`, or one of the names
/// `tab`, `\t` (a backslash and a t), `comma`, `semicolon`, `space` and
/// `pipe`, in any case. Rejects the characters that would break parsing: the
/// CSV quote `"`, control characters other than tab, and the letters,
/// digits, `.`, `+` and `-` that numbers contain.
///
/// # Errors
/// Returns a message that names `text` and lists the accepted values.
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    let named = match text.to_ascii_lowercase().as_str() {
        "tab" | "\\t" => Some(b'\t'),
        "comma" => Some(b','),
        "semicolon" => Some(b';'),
        "space" => Some(b' '),
        "pipe" => Some(b'|'),
        _ => None,
    };
    if let Some(delimiter) = named {
        return Ok(delimiter);
    }

    let escaped_text = text.escape_debug();
    let mut chars = text.chars();
    let character = match (chars.next(), chars.next()) {
        (Some(character), None) => character,
        (None, _) => return Err(format!("the delimiter is empty; {ACCEPTED}")),
        (Some(_), Some(_)) => {
            return Err(format!("delimiter '{escaped_text}' is invalid; {ACCEPTED}"))
        }
    };
    if !character.is_ascii() {
        return Err(format!(
            "delimiter '{escaped_text}' is not an ASCII character; {ACCEPTED}"
        ));
    }

    let byte = character as u8;
    let reason = if byte == b'"' {
        Some("it is the quote character of CSV files")
    } else if byte.is_ascii_control() && byte != b'\t' {
        Some("it is a control character")
    } else if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'+' | b'-') {
        Some("it can be part of a number")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(format!(
            "delimiter '{escaped_text}' is invalid because {reason}; {ACCEPTED}"
        )),
        None => Ok(byte),
    }
}

/// Spells `delimiter` as `--delimiter` takes it and as messages show it:
/// `tab`, `space`, or the character in single quotes.
pub(super) fn delimiter_argument(delimiter: u8) -> String {
    match delimiter {
        b'\t' => "tab".to_owned(),
        b' ' => "space".to_owned(),
        other => format!("'{}'", char::from(other).escape_debug()),
    }
}

/// Returns the common delimiter, other than `current`, that occurs most
/// often in `line`, or `None` when `line` contains none of them.
pub(super) fn suggest_delimiter(line: &str, current: u8) -> Option<u8> {
    let mut best: Option<(u8, usize)> = None;
    for candidate in COMMON_DELIMITERS {
        if candidate == current {
            continue;
        }
        let count = line.bytes().filter(|&byte| byte == candidate).count();
        let better = match best {
            Some((_, best_count)) => count > best_count,
            None => count > 0,
        };
        if better {
            best = Some((candidate, count));
        }
    }
    best.map(|(delimiter, _)| delimiter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_delimiter_accepts_names() {
        let cases = [
            ("tab", b'\t'),
            ("TAB", b'\t'),
            ("\\t", b'\t'),
            ("comma", b','),
            ("semicolon", b';'),
            ("space", b' '),
            ("pipe", b'|'),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_delimiter(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn parse_delimiter_accepts_characters() {
        for (text, expected) in [
            (";", b';'),
            (",", b','),
            ("|", b'|'),
            ("\t", b'\t'),
            (" ", b' '),
        ] {
            assert_eq!(parse_delimiter(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn parse_delimiter_rejects_with_reason() {
        let cases = [
            ("", "the delimiter is empty"),
            ("colon", "delimiter 'colon' is invalid;"),
            (";;", "delimiter ';;' is invalid;"),
            ("§", "delimiter '§' is not an ASCII character"),
            ("\"", "quote character"),
            (
                "\n",
                "delimiter '\\n' is invalid because it is a control character",
            ),
            ("e", "part of a number"),
            ("7", "part of a number"),
            (".", "part of a number"),
            ("-", "part of a number"),
        ];
        for (text, expected) in cases {
            let message = parse_delimiter(text).expect_err(text);

            assert!(message.contains(expected), "{text:?}: {message}");
            assert!(
                message.contains("tab, comma, semicolon"),
                "{text:?}: {message}"
            );
        }
    }

    #[test]
    fn delimiter_argument_spells_option() {
        assert_eq!(delimiter_argument(b'\t'), "tab");
        assert_eq!(delimiter_argument(b' '), "space");
        assert_eq!(delimiter_argument(b';'), "';'");
        for delimiter in [b'\t', b' ', b';', b',', b'|'] {
            let argument = delimiter_argument(delimiter);
            let unquoted = argument.trim_matches('\'');
            assert_eq!(parse_delimiter(unquoted), Ok(delimiter), "{argument}");
        }
    }

    #[test]
    fn suggest_delimiter_picks_most_frequent() {
        assert_eq!(suggest_delimiter("a;b;c", b','), Some(b';'));
        assert_eq!(suggest_delimiter("a\tb\tc", b','), Some(b'\t'));
        assert_eq!(suggest_delimiter("1,5;2,5;3", b','), Some(b';'));
        assert_eq!(suggest_delimiter("1,5;2,5;3", b';'), Some(b','));
        assert_eq!(suggest_delimiter("a|b;c|d", b','), Some(b'|'));
        assert_eq!(suggest_delimiter("a;b\tc", b','), Some(b';'));
        assert_eq!(suggest_delimiter("1", b','), None);
        assert_eq!(suggest_delimiter("a;b", b';'), None);
    }
}
