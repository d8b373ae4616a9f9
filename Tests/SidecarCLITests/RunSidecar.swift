// Runs the built `sidecar` binary as a user would (shared with SweepTests through a link).
import Dispatch
import Foundation

/// The `sidecar` executable next to this test bundle (both live in the build products folder).
func sidecarBinary() -> URL {
    let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return me.deletingLastPathComponent().appendingPathComponent("sidecar")
}

/// Runs `sidecar` with arguments; returns exit status, stdout and stderr.
func runSidecar(_ arguments: [String], environment: [String: String]? = nil, directory: String? = nil,
                input: Data? = nil) throws -> (status: Int32, out: String, err: String) {
    let process = Process()
    process.executableURL = sidecarBinary()
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if var environment {
        // `make sanitize` configures the sanitizers through the environment; a replaced
        // environment keeps those settings so the child runs as the test runner does.
        for (key, value) in ProcessInfo.processInfo.environment where key.hasSuffix("SAN_OPTIONS") { environment[key] = value }
        process.environment = environment
    }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let stdin = input.map { _ in Pipe() }
    if let stdin { process.standardInput = stdin }
    try process.run()
    if let stdin, let input {
        // Written from another thread: a child that prints before reading all of it must not block this.
        DispatchQueue.global().async {
            stdin.fileHandleForWriting.write(input)
            try? stdin.fileHandleForWriting.close()
        }
    }
    // Both pipes are drained at once: a child that fills one while this waits on the other
    // (a long error report) would otherwise block forever.
    nonisolated(unsafe) var errData = Data()
    let drained = DispatchGroup()
    DispatchQueue.global().async(group: drained) { errData = err.fileHandleForReading.readDataToEndOfFile() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    drained.wait()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}
