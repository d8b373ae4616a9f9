// Parsing `--layers`: "all", a list "0,3,6", ranges "0-6", or a mix "0,2-4".
import Foundation

public enum LayerSelection {
    /// The sorted, distinct layers `text` names, each in 0...layerCount (0 is the embedding output).
    public static func parse(_ text: String, layerCount: Int) throws -> [Int] {
        if text == "all" { return Array(0...layerCount) }
        var layers = Set<Int>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(bounds.count), let low = bounds.first!, let high = bounds.last!, low <= high else {
                throw ExtractError("--layers \"\(text)\": \"\(part)\" is not a layer or a range like 0-6")
            }
            guard low >= 0, high <= layerCount else {
                throw ExtractError("--layers \"\(text)\": the backbone has layers 0...\(layerCount) (0 is the embedding output)")
            }
            layers.formUnion(low...high)
        }
        return layers.sorted()
    }
}

/// A user-facing extraction error.
public struct ExtractError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
