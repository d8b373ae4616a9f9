// Strings that come from input (labels, texts, file names, results lines) on their way to a
// terminal: escape sequences, bells, carriage returns, tabs and line breaks there would redraw the
// screen or split a table's row, and bidirectional overrides would reorder what is shown.
public enum TerminalText {
    /// U+202A–202E and U+2066–2069: embeddings, overrides and isolates that reorder displayed text.
    public static func isBidiControl(_ scalar: Unicode.Scalar) -> Bool {
        (0x202A...0x202E).contains(scalar.value) || (0x2066...0x2069).contains(scalar.value)
    }

    /// C0 and C1 control characters, DEL, and bidirectional controls.
    public static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || isBidiControl(scalar)
    }

    /// `text` with every unsafe character shown as U+FFFD.
    public static func safe(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnsafe) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars { out.append(isUnsafe(scalar) ? "\u{FFFD}" : scalar) }
        return String(out)
    }
}
