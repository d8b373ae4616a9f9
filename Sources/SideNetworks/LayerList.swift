import Foundation

/// A `layers` hyperparameter as written: `all`, `last`, or layers and ranges `a-b` separated by
/// commas. Read here alone, for both its uses: the layers a head reads from a cache
/// (`HeadContext.resolveLayers`) and the one spelling a sweep trial's id hashes
/// (`Hyperparameter.canonicalLayers`), so that the two cannot come to read a list differently.
public enum LayerList: Equatable, Sendable {
    case all
    case last
    /// Each part as written, in order, not yet checked against a backbone's layers (so not yet
    /// expanded: `0-99999999999` is one range here).
    case ranges([ClosedRange<Int>])

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
            var ranges: [ClosedRange<Int>] = []
            for part in text.split(separator: ",", omittingEmptySubsequences: false) {
                let bounds = part.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map { bound -> Int? in
                    let digits = bound.trimmingCharacters(in: .whitespaces)
                    return digits.allSatisfy(\.isASCII) ? Int(digits) : nil
                }
                guard let first = bounds.first ?? nil, let last = bounds.last ?? nil else {
                    throw Fault(part: String(part), reason: .notALayer)
                }
                guard first <= last else { throw Fault(part: String(part), reason: .emptyRange) }
                ranges.append(first...last)
            }
            self = .ranges(ranges)
        }
    }
}
