// LabelMap: label names ↔ dense integer ids, fixed by sorting the train split's names, so the same
// train file always gives the same ids. Deliberately no frequency order and no "unknown" id: a
// label the train split never uses cannot be learnt, and the readers report it as an error.

/// The names of a dataset's classes and their ids `0..<count`. Names are told apart by their
/// UTF-8 bytes, as Python tells strings apart: Swift's String equality would merge "café" written
/// with one code point and with two (canonically equivalent) into one class.
public struct LabelMap: Sendable, Equatable, Codable {
    /// Names in id order: `names[id]`.
    public let names: [String]
    private let ids: [[UInt8]: Int]

    /// A map whose ids are the positions in `names`; names must be distinct.
    public init(names: [String]) {
        var ids: [[UInt8]: Int] = [:]
        for (id, name) in names.enumerated() {
            precondition(ids.updateValue(id, forKey: Array(name.utf8)) == nil, "label \"\(name)\" listed twice in \(names)")
        }
        self.names = names
        self.ids = ids
    }

    /// A map of the distinct names in `labels`, in `LabelMap.sorted` order.
    public init(collecting labels: some Sequence<String>) {
        self.init(names: LabelMap.sorted(labels))
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let names = try container.decode([String].self)
        guard Set(names.map { Array($0.utf8) }).count == names.count else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "label names are not distinct")
        }
        self.init(names: names)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(names)
    }

    /// The number of classes.
    public var count: Int { names.count }

    /// The id of `name`, or nil if the map does not hold it.
    public func id(of name: String) -> Int? { ids[Array(name.utf8)] }

    /// The name of class `id`.
    public func name(of id: Int) -> String {
        precondition(names.indices.contains(id), "label id \(id) outside 0..<\(names.count)")
        return names[id]
    }

    /// The distinct names (by their bytes) in id order: if every name is a decimal integer,
    /// numeric order (so labels 0…12 get ids 0…12, not 0, 1, 10, 11, 12, 2, …); otherwise Unicode
    /// code-point order, which is Python's `sorted()` order and does not depend on the locale.
    public static func sorted(_ labels: some Sequence<String>) -> [String] {
        var seen = Set<[UInt8]>()
        let names = labels.filter { seen.insert(Array($0.utf8)).inserted }
        let numbers = names.map { name in Int(name).map { (name, $0) } }
        if numbers.allSatisfy({ $0 != nil }) {
            // Ties ("7" and "07") fall back to code-point order, so the order stays total.
            return numbers.compactMap { $0 }.sorted { left, right in
                left.1 != right.1 ? left.1 < right.1 : codePointOrder(left.0, right.0)
            }.map(\.0)
        }
        return names.sorted(by: codePointOrder)
    }

    private static func codePointOrder(_ left: String, _ right: String) -> Bool {
        left.unicodeScalars.lexicographicallyPrecedes(right.unicodeScalars)
    }
}
