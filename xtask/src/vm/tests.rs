//! Tests of the parent module.

use super::*;

#[test]
fn console_escapes_are_removed() {
    assert_eq!(
        strip_escapes("\u{1b}c\u{1b}[?7l\u{1b}[2JSeaBIOS (version 1.16)"),
        "SeaBIOS (version 1.16)"
    );
    assert_eq!(strip_escapes("plain\ttext"), "plain\ttext");
}
