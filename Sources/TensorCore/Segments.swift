// Packed variable-length sequences: the tokens of several examples stacked as rows [T, D], with
// offsets saying where each example starts. Packing means no kernel ever computes on padding.

/// Where each example's rows start in a packed [T, D] batch: example b owns rows
/// offsets[b]..<offsets[b + 1], offsets[0] == 0 and offsets.last == T.
public struct Segments: Sendable, Equatable {
    public let offsets: [Int]

    /// Offsets must start at 0 and never decrease.
    public init(offsets: [Int]) {
        precondition(offsets.first == 0, "segment offsets must start at 0, got \(offsets.prefix(3))")
        precondition(zip(offsets, offsets.dropFirst()).allSatisfy { $0 <= $1 }, "segment offsets decrease: \(offsets)")
        self.offsets = offsets
    }

    /// Segments of the given lengths, in order.
    public init(lengths: [Int]) {
        var offsets = [0]
        for length in lengths { offsets.append(offsets.last! + length) }
        self.init(offsets: offsets)
    }

    /// Number of examples.
    public var count: Int { offsets.count - 1 }
    /// Total rows.
    public var totalRows: Int { offsets.last! }
    public var lengths: [Int] { zip(offsets.dropFirst(), offsets).map { $0 - $1 } }
    public func range(_ b: Int) -> Range<Int> { offsets[b]..<offsets[b + 1] }
    /// The first row of each example (BERT's [CLS], ViT's class token).
    public var firstRows: [Int] { Array(offsets.dropLast()) }
}
