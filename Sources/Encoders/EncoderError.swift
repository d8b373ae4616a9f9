// Errors from loading a backbone folder: each names the file (and key) and says what is wrong.

/// A problem with a backbone's files, reported to the user.
public struct EncoderError: Error, CustomStringConvertible, Equatable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
