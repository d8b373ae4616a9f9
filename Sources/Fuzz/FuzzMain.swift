// sidecar-fuzz: libFuzzer targets for the parsers that read untrusted bytes (safetensors, the
// tokenizer, JSONL/CSV/TSV, IDX, PNG/JPEG, cache records).
//
//   sidecar-fuzz TARGET [libFuzzer flags] [CORPUS_DIR...]   fuzz build (make fuzz)
//   sidecar-fuzz TARGET FILE_OR_DIR...                       ordinary build: replays the inputs
//   sidecar-fuzz write-seeds DIR                             ordinary build: writes the seed corpora
//
// The fuzz build is `swift build --sanitize=fuzzer -Xswiftc -DSIDECAR_FUZZ`: libFuzzer brings its
// own `main`, so the @main below exists only in ordinary builds, and the target name is taken
// off the command line in LLVMFuzzerInitialize, before libFuzzer reads its flags.
//
// A crash, trap or failed invariant is a bug in the parser; every input that only throws is fine.

import Foundation

/// The target chosen on the command line, read by LLVMFuzzerTestOneInput (a C entry point).
nonisolated(unsafe) var selectedTarget: FuzzTarget?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let selectedTarget else { return 0 }
    selectedTarget.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

/// Picks the target from the first argument and removes it; libFuzzer re-executes itself for
/// some modes (-fork, -merge) with its own flags only, so the choice also goes into the environment.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    let count = Int(argc.pointee)
    if count > 1, let first = argv.pointee[1], FuzzTarget.named(String(cString: first)) != nil {
        setenv("SIDECAR_FUZZ_TARGET", first, 1)
        for index in 1..<count { argv.pointee[index] = argv.pointee[index + 1] }
        argc.pointee -= 1
    }
    guard let name = ProcessInfo.processInfo.environment["SIDECAR_FUZZ_TARGET"], let target = FuzzTarget.named(name) else {
        usage()
    }
    selectedTarget = target
    removeScratchFilesAtExit()
    return 0
}

func usage() -> Never {
    let names = FuzzTarget.all.map(\.name).joined(separator: ", ")
    FileHandle.standardError.write(Data("""
        usage: sidecar-fuzz TARGET [libFuzzer flags] [CORPUS...]   (targets: \(names))
               sidecar-fuzz write-seeds DIR

        """.utf8))
    exit(2)
}

#if !SIDECAR_FUZZ
/// Without libFuzzer: run every given file (or every file in a given folder) once, as libFuzzer
/// does when handed files, so a crash file reproduces in an ordinary (debuggable) build.
@main enum FuzzMain {
    static func main() {
        let arguments = CommandLine.arguments
        if arguments.count == 3 && arguments[1] == "write-seeds" {
            do {
                try writeSeeds(to: arguments[2])
            } catch {
                FileHandle.standardError.write(Data("sidecar-fuzz: \(error)\n".utf8))
                exit(1)
            }
            return
        }
        guard arguments.count > 2, let target = FuzzTarget.named(arguments[1]) else { usage() }
        let inputs = arguments.dropFirst(2)
        if inputs.contains(where: { $0.hasPrefix("-") }) {
            FileHandle.standardError.write(Data("sidecar-fuzz: libFuzzer flags need the fuzz build (make fuzz); this build only replays files\n".utf8))
            exit(2)
        }
        removeScratchFilesAtExit()
        var replayed = 0
        for input in inputs {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isFolder) else {
                FileHandle.standardError.write(Data("sidecar-fuzz: \(input): no such file or folder\n".utf8))
                exit(1)
            }
            let files = isFolder.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: input)) ?? []).sorted().map { input + "/" + $0 }
                : [input]
            for file in files {
                guard let bytes = FileManager.default.contents(atPath: file) else { continue }
                bytes.withUnsafeBytes { target.run($0) }
                replayed += 1
            }
        }
        print("\(target.name): \(replayed) inputs replayed, no crash")
    }
}
#endif
