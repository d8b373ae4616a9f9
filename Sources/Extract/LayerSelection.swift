// Parsing `--layers`: "all", "last", a list "0,3,6", ranges "0-6", or a mix "0,2-4" (read by
// `LayerList`, as a head's layers are).
import ActivationStore
import Datasets
import Foundation

public enum LayerSelection {
    /// The sorted, distinct layers `text` names, each in 0...layerCount (0 is the embedding output).
    public static func parse(_ text: String, layerCount: Int) throws -> [Int] {
        let list: LayerList
        do { list = try LayerList(text) } catch {
            throw ExtractError("--layers \"\(text)\": \"\(error.part)\" is not a layer or a range like 0-6")
        }
        let parts: [LayerList.Part]
        switch list {
        case .all: return Array(0...layerCount)
        case .last: return [layerCount]
        case .parts(let written): parts = written
        }
        guard parts.allSatisfy({ $0.layers.lowerBound >= 0 && $0.layers.upperBound <= layerCount }) else {
            throw ExtractError("--layers \"\(text)\": the backbone has layers 0...\(layerCount) (0 is the embedding output)")
        }
        return Array(Set(parts.map(\.layers).joined())).sorted()
    }
}

/// A user-facing extraction error.
public struct ExtractError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension ExtractError {
    /// Refuses a dataset whose train split has one label: every head is a classifier, and fit and
    /// sweep refuse such a cache, so extracting it (hours, for a large dataset) would be wasted.
    static func requireTwoLabels(_ labels: LabelMap, in file: String) throws {
        guard labels.names.count < 2 else { return }
        let which = labels.names.first.map { "every example has the label \"\($0)\"" } ?? "no example has a label"
        throw ExtractError("\(file): \(which); a classifier needs at least 2 labels, and fit and sweep refuse a cache of one")
    }
}
