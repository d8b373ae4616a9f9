// zstd compression into caller-provided buffers with reusable contexts: the cache writer and
// reader compress and decompress millions of records, so neither allocates per call. Frames carry
// zstd's content checksum, so corrupted records fail to decompress rather than decode to garbage.
// Not a streaming API: a record's block is one frame per byte plane (or one frame), each compressed
// whole, and the block's frames are decompressed together into one buffer.
import CZstd

/// A zstd failure: what was being done and zstd's own error name (`ZSTD_getErrorName`).
public struct ZstdError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let reason: String

    public var description: String { "zstd \(operation) failed: \(reason)" }

    /// Throws when `result` is a zstd error code; returns it otherwise.
    static func check(_ result: Int, _ operation: String) throws -> Int {
        if ZSTD_isError(result) != 0 {
            throw ZstdError(operation: operation, reason: String(cString: ZSTD_getErrorName(result)))
        }
        return result
    }
}

/// A reusable compression context (ZSTD_CCtx) at a fixed level, writing frames with the content
/// size and a content checksum. Not thread-safe: one per thread.
public final class ZstdCompressor {
    private let context: OpaquePointer
    public let level: Int32

    /// `level` is zstd's: 1 (fast; as good as 3–9 on activations) to 22; out-of-range levels are
    /// clamped by zstd. `minimumMatch` (3–7, zstd's `ZSTD_c_minMatch`) overrides the level's
    /// shortest match searched for; nil keeps the level's.
    public init(level: Int32 = 1, minimumMatch: Int32? = nil) {
        context = ZSTD_createCCtx()
        self.level = level
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
        if let minimumMatch {
            precondition(ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_minMatch, minimumMatch)) == 0,
                         "zstd refused a shortest match of \(minimumMatch) (its range is 3...7)")
        }
    }

    deinit { ZSTD_freeCCtx(context) }

    /// The largest compressed size of `count` input bytes: a destination this big always suffices.
    public static func compressBound(_ count: Int) -> Int { ZSTD_compressBound(count) }

    /// Compresses `source` into one frame in `destination`; returns the bytes written.
    ///
    /// Errors: "Destination buffer is too small" when the frame does not fit (a destination of
    /// `compressBound(source.count)` bytes always fits); "Allocation error" when out of memory.
    public func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        try ZstdError.check(
            ZSTD_compress2(context, destination.baseAddress, destination.count, source.baseAddress, source.count),
            "compression")
    }
}

/// A reusable decompression context (ZSTD_DCtx). Not thread-safe: one per thread.
public final class ZstdDecompressor {
    private let context: OpaquePointer

    /// `checkingContent: false` skips the check of each frame's content checksum (an XXH64 of
    /// the decompressed bytes), for a reader that has already checked the compressed bytes
    /// against a checksum of its own.
    public init(checkingContent: Bool = true) {
        context = ZSTD_createDCtx()
        if !checkingContent { _ = sidecar_zstd_ignore_content_checksum(context) }
    }
    deinit { ZSTD_freeDCtx(context) }

    /// The decompressed size recorded in the header of the first frame in `source` (of several
    /// concatenated frames, that frame's alone); nil when the header does not record it or
    /// `source` does not start with a valid frame header.
    public static func contentSize(of source: UnsafeRawBufferPointer) -> Int? {
        let size = ZSTD_getFrameContentSize(source.baseAddress, source.count)
        if size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR { return nil }
        return Int(exactly: size)
    }

    /// Decompresses the frame(s) in `source` into `destination`; returns the bytes written.
    ///
    /// Errors: "Destination buffer is too small"; "Unknown frame descriptor" when `source` is not
    /// zstd; "Restored data doesn't match checksum" or "Data corruption detected" for corrupted
    /// input; "Src size is incorrect" for truncated input; "empty input" for no bytes at all
    /// (zstd itself reads that as zero frames holding nothing, which hides a lost record).
    public func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard !source.isEmpty else { throw ZstdError(operation: "decompression", reason: "empty input") }
        return try ZstdError.check(
            ZSTD_decompressDCtx(context, destination.baseAddress, destination.count, source.baseAddress, source.count),
            "decompression")
    }

    /// zstd's version, e.g. "1.5.4".
    public static var version: String { String(cString: ZSTD_versionString()) }
}
