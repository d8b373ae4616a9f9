import Foundation

/// A list of layers as written: `all`, `last`, or layers and ranges `a-b` separated by commas.
/// Read here alone, for each of its uses: the layers `extract --layers` keeps, the layers a head
/// reads from a cache (`HeadContext.resolveLayers`) and the one spelling a sweep trial's id hashes
/// (`Hyperparameter.canonicalLayers`), so that they cannot come to read a list differently.
public enum LayerList: Equatable, Sendable {
    case all
    case last
    /// Each part, in order, not yet checked against a backbone's layers (so not yet expanded:
    /// `0-99999999999` is one range here).
    case parts([Part])

    /// A layer or a range as written, and the layers it names.
    public struct Part: Equatable, Sendable {
        public let text: String
        public let layers: ClosedRange<Int>
    }

    /// A part of the list that is no layer or range, as written.
    public struct Fault: Error, Equatable {
        public enum Reason: Equatable, Sendable {
            /// Not a number or a range a-b of numbers ("-1", Python's last, had read layer 1; an
            /// empty part had been skipped).
            case notALayer
            /// A range whose end comes before its start.
            case emptyRange
        }

        public let part: String
        public let reason: Reason
    }

    public init(_ text: String) throws(Fault) {
        switch text {
        case "all": self = .all
        case "last": self = .last
        default:
            var parts: [Part] = []
            for part in text.split(separator: ",", omittingEmptySubsequences: false) {
                let bounds = part.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map { bound -> Int? in
                    let digits = bound.trimmingCharacters(in: .whitespaces)
                    return digits.allSatisfy(\.isASCII) ? Int(digits) : nil
                }
                guard let first = bounds.first ?? nil, let last = bounds.last ?? nil else {
                    throw Fault(part: String(part), reason: .notALayer)
                }
                guard first <= last else { throw Fault(part: String(part), reason: .emptyRange) }
                parts.append(Part(text: String(part), layers: first...last))
            }
            self = .parts(parts)
        }
    }
}
