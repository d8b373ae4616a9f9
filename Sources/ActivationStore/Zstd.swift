// zstd compression into caller-provided buffers, with reusable contexts (one per thread): the
// cache writer and reader compress and decompress millions of records, so neither allocates per
// call. Frames carry zstd's content checksum, so corrupted records fail to decompress.
import CZstd

/// A zstd failure, with zstd's own error name.
public struct ZstdError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

/// A reusable compression context. Not thread-safe: one per thread.
public final class ZstdCompressor {
    private let context: OpaquePointer
    public let level: Int32

    public init(level: Int32 = 1) {
        context = ZSTD_createCCtx()
        self.level = level
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
    }

    deinit { ZSTD_freeCCtx(context) }

    /// The largest compressed size of `count` input bytes: a destination this big always suffices.
    public static func compressBound(_ count: Int) -> Int { ZSTD_compressBound(count) }

    /// Compresses `source` into `destination`; returns the bytes written.
    /// Errors: "Destination buffer is too small" when it does not fit.
    public func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        let written = ZSTD_compress2(context, destination.baseAddress, destination.count, source.baseAddress, source.count)
        if ZSTD_isError(written) != 0 {
            throw ZstdError(description: "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        }
        return written
    }
}

/// A reusable decompression context. Not thread-safe: one per thread.
public final class ZstdDecompressor {
    private let context: OpaquePointer

    public init() { context = ZSTD_createDCtx() }
    deinit { ZSTD_freeDCtx(context) }

    /// The decompressed size recorded in a frame's header, or nil when unknown or not a frame.
    public static func contentSize(of source: UnsafeRawBufferPointer) -> Int? {
        let size = ZSTD_getFrameContentSize(source.baseAddress, source.count)
        if size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR { return nil }
        return Int(size)
    }

    /// Decompresses one frame from `source` into `destination`; returns the bytes written.
    /// Errors: corrupted or truncated input, checksum mismatch, destination too small.
    public func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        let written = ZSTD_decompressDCtx(context, destination.baseAddress, destination.count, source.baseAddress, source.count)
        if ZSTD_isError(written) != 0 {
            throw ZstdError(description: "zstd decompression failed: \(String(cString: ZSTD_getErrorName(written)))")
        }
        return written
    }

    /// zstd's version, e.g. "1.5.4".
    public static var version: String { String(cString: ZSTD_versionString()) }
}
