// Under an address-space limit (`ulimit -v`, as Grid Engine's h_vmem sets), `fit` either trains
// or says how much room it needs: OpenBLAS had retried its buffers' allocation forever at full
// CPU where the limit left too little, and a failed allocation had crashed the process.
import Foundation
import Testing

/// Sanitizers reserve terabytes of address space for their shadow memory: no limit can apply.
private let sanitized = sidecarBinary().path.contains(".build-asan") || sidecarBinary().path.contains(".build-tsan")

@Suite(.serialized, .enabled(if: !sanitized)) struct AddressSpaceLimitTests {
    /// `sidecar fit` under `ulimit -v` of `mib` MiB, stopped (and recorded as hung) after two minutes.
    static func fit(cache: String, limit mib: Int) throws -> (status: Int32, err: String) {
        let out = temporaryPath("address-space-head")
        defer { removeFolder(out) }
        return try run(["fit", "--cache", cache, "--head", "linear", "--epochs", "1", "--out", out], limit: mib)
    }

    /// `sidecar` with `arguments` under `ulimit -v` of `mib` MiB, as `fit`.
    static func run(_ arguments: [String], limit mib: Int) throws -> (status: Int32, err: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", "ulimit -v \(mib << 10) && exec \"$0\" \"$@\"", sidecarBinary().path] + arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        let started = Date()
        try process.run()
        let watchdog = DispatchWorkItem { kill(process.processIdentifier, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        watchdog.cancel()
        let text = String(decoding: errData, as: UTF8.self)
        #expect(Date().timeIntervalSince(started) < 110, "\(arguments[0]) under \(mib) MiB hung: \(text.suffix(400))")
        return (process.terminationStatus, text)
    }

    /// Bisects the limit down from one that trains to one that leaves the cache mapped but too
    /// little besides: that fit is refused with the room it needs, and a fit with that room trains.
    /// (Where the cores are few, all that may fit under the 1 GiB every command is refused below:
    /// then a fit just above it trains.)
    @Test func aFitUnderTooTightALimitSaysWhatItNeeds() throws {
        let cache = try ReliabilityTests.tinyCache.get()
        var (tooLittle, enough) = (1024, 64 << 10)
        #expect(try Self.fit(cache: cache, limit: enough).status == 0)
        let justAbove = try Self.fit(cache: cache, limit: tooLittle + 16)
        if justAbove.status == 0 { return }
        var refusal: String? = justAbove.err.contains("are mapped already") ? justAbove.err : nil
        for _ in 0..<16 where refusal == nil && enough - tooLittle > 16 {
            let limit = (tooLittle + enough) / 2
            let result = try Self.fit(cache: cache, limit: limit)
            if result.status == 0 {
                enough = limit
            } else if result.err.contains("are mapped already") {
                refusal = result.err
                #expect(result.status == 1 && !result.err.contains("Fatal error"), "\(result.err.suffix(600))")
            } else {
                tooLittle = limit
            }
        }
        let message = try #require(refusal, "no limit between \(tooLittle) and \(enough) MiB was refused with the room fit needs")
        #expect(message.contains("Error: sidecar fit: the address-space limit (ulimit -v) is ") && message.contains("OpenBLAS maps 129 MiB"),
                "\(message)")
        let needed = try #require(message.firstMatch(of: /Raise the limit to at least (\d+) MiB/).flatMap { Int($0.1) }, "\(message)")
        let trained = try Self.fit(cache: cache, limit: needed + 16)
        #expect(trained.status == 0, "with the \(needed) MiB it asked for: \(trained.err.suffix(600))")
    }

    /// Under 1 GiB OpenBLAS cannot start its threads, and leaving then waited for them forever,
    /// after even `--version` had printed.
    @Test func aLimitUnderAGibibyteIsRefusedAtOnce() throws {
        for mib in [512, 960] {
            let result = try Self.run(["--version"], limit: mib)
            #expect(result.status == 1 && result.err.contains("the address-space limit is \(mib) MiB (ulimit -v); sidecar needs at least 1024 MiB"),
                    "\(result.err)")
        }
    }
}
