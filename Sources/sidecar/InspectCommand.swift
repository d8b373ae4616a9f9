// `sidecar inspect`: what a cache holds, how well it compressed, whether it is intact.
import ActivationStore
import ArgumentParser
import Foundation
import Training

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a cache's manifest, counts, bytes per layer and compression; verify or export records.")

    @Argument(help: "The cache folder.")
    var cache: String

    @Flag(help: "Check every record's and blob's checksums and decode them; list every damaged key (exit status 1 if any, or if the cache is incomplete).")
    var verify = false

    @Flag(help: "Print the report as JSON (with ratio_vs_f32 and a digest per split).")
    var json = false

    @Option(help: "Export one example, SPLIT:INDEX (e.g. train:0), with --npy.")
    var example: String?

    @Option(parsing: .unconditional, help: "With --example: only this layer.")
    var layer: Int?

    @Option(help: "With --example: write the activations as a NumPy .npy file of shape [layers, tokens, width].")
    var npy: String?

    @Flag(help: "Open without LMDB's lock file (only for caches no process is writing, e.g. on read-only shared storage).")
    var noLock = false

    func validate() throws {
        if (example == nil) != (npy == nil) { throw ValidationError("--example and --npy go together") }
        if layer != nil && example == nil { throw ValidationError("--layer needs --example") }
        if example != nil && (verify || json) { throw ValidationError("--example exports one example; run --verify or --json without it") }
    }

    func run() throws {
        let opened = try ActivationCache.open(path: cache, noLock: noLock)
        if let example, let npy {
            do { try export(opened, example, to: try outputFile(npy, flag: "--npy")) } catch let error as CorruptRecord {
                throw CacheError("\(cache): \(error)")
            }
            return
        }
        let report: CacheReport
        do { report = try CacheReport.make(opened, verify: verify, digest: json || verify) } catch let error as CorruptRecord {
            // The digest reads every record; a damaged one stops it, said as fit and eval say it.
            throw CacheError("\(cache): \(error); `sidecar inspect \(cache) --verify` lists every damaged record")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            printReport(report)
        }
        if let damaged = report.damaged, !damaged.isEmpty { throw ExitCode(1) }
        // A cache fit refuses does not pass verification, though every record it holds is sound.
        if verify && report.splits.contains(where: { !$0.complete }) { throw ExitCode(1) }
    }

    private func export(_ cache: ActivationCache, _ example: String, to path: String) throws {
        let parts = example.split(separator: ":")
        let settings = cache.manifest.settings
        guard parts.count == 2, settings.splits.contains(String(parts[0])), parts[1].allSatisfy({ ("0"..."9").contains($0) }) else {
            throw CommandError("--example \(example): expected SPLIT:INDEX with SPLIT one of \(settings.splits.joined(separator: ", "))")
        }
        let split = String(parts[0])
        let held = settings.heldRange(of: split)
        // Digits past Int's range are an index out of range too, not a misspelt split.
        guard let index = Int(parts[1]), held.contains(index) else {
            throw CommandError("--example \(example): this cache holds \(split) examples \(held.lowerBound)..<\(held.upperBound)\(settings.shard.map { " (shard \($0.index)/\($0.count))" } ?? "")")
        }
        let layers = layer.map { [$0] } ?? settings.layers
        if let layer, !settings.layers.contains(layer) {
            throw CommandError("--layer \(layer): the cache holds layers \(settings.layers.map(String.init).joined(separator: ","))")
        }
        let decoder = try cache.makeDecoder()
        let (values, rows, width) = try cache.withRecord(split: split, index: index) { record -> ([Float], Int, Int) in
            var all: [Float] = []
            var block = [Float](repeating: 0, count: record.rows * record.width)
            for l in layers {
                try block.withUnsafeMutableBufferPointer { try decoder.decode(record, layer: l, into: $0) }
                all += block
            }
            return (all, record.rows, record.width)
        }
        try NumpyFile.write(values, shape: [layers.count, rows, width], to: path)
        print("wrote \(path): [\(layers.count), \(rows), \(width)] float32 (layers \(layers.map(String.init).joined(separator: ",")))")
    }

    private func printReport(_ r: CacheReport) {
        let s = r.manifest.settings
        print("cache      \(r.path) (format \(r.manifest.format))")
        print("backbone   \(s.backbone.name) [\(s.backbone.architecture)], \(s.backbone.layerCount) layers, width \(s.backbone.hiddenSize), weights \(s.backbone.weightsHash)")
        print("records    layers \(s.layers.map(String.init).joined(separator: ",")), tokens \(s.tokens.rawValue), \(s.storage.rawValue), zstd \(s.zstdLevel)\(s.shuffle ? " + byte shuffle" : "")"
              + ", computed in \(s.compute ?? "f32")")
        if s.streams != nil || s.blobs != nil || s.maxTokens != nil {
            print("extras     streams \((s.streams ?? []).isEmpty ? "none" : s.streams!.joined(separator: ",")), blobs \((s.blobs ?? []).isEmpty ? "none" : s.blobs!.joined(separator: ", "))"
                  + ", N_max \(s.maxTokens.map(String.init) ?? "-"), pooling \(s.pooling ?? "-")")
        }
        print("labels     \(s.labels.count): \(s.labels.prefix(12).map(TerminalText.safe).joined(separator: ", "))\(s.labels.count > 12 ? ", …" : "")")
        if let shard = s.shard {
            print("shard      \(shard.index)/\(shard.count) of an extraction in chunks of \(shard.chunkSize): "
                  + s.splits.map { "\($0) \(shard.range(of: $0).count) of \(s.splitCounts[$0] ?? 0) (\(IndexRange(shard.range(of: $0))))" }.joined(separator: ", ")
                  + "; join the shards with sidecar merge")
        }
        print("\nsplit      examples   stored   complete   digest")
        for split in r.splits {
            print(split.name.padding(toLength: 10, withPad: " ", startingAt: 0)
                  + String(format: "%9d %8d   %-8@   %@", split.expected, split.records, split.complete ? "yes" : "no", split.digest ?? "-"))
        }
        let incomplete = r.splits.filter { !$0.complete }
        if !incomplete.isEmpty {
            print("incomplete: " + incomplete.map { "\($0.name) (\($0.written) of \($0.expected))" }.joined(separator: ", ") + "; \(SplitProgress.toFinish)")
        }
        print("\nlayer   stored MB   raw fp32 MB   ratio   bytes/token")
        for l in r.layers {
            print(String(format: "%5d %11.2f %13.2f %7.3f %13.1f", l.layer, Double(l.storedBytes) / 1e6, Double(l.rawFloat32Bytes) / 1e6,
                         l.rawFloat32Bytes > 0 ? Double(l.storedBytes) / Double(l.rawFloat32Bytes) : 0, l.bytesPerToken))
        }
        print(String(format: "total %11.2f %13.2f %7.3f   (stored / raw fp32)", Double(r.storedBytes) / 1e6, Double(r.rawFloat32Bytes) / 1e6, r.ratioVsF32))
        if let damaged = r.damaged {
            let unchecked = r.uncheckedBlobs ?? []
            let checked = unchecked.isEmpty ? "every record's and blob's checksums match"
                : "every record's checksums match (blob\(unchecked.count == 1 ? "" : "s") \(unchecked.joined(separator: ", ")) "
                    + "without a checksum, as written before blobs had one: read but not checked)"
            let sound = incomplete.isEmpty ? "\nverified: \(checked) and every block decodes"
                : "\nnot verified: the records written so far and the blobs are sound, but the cache is incomplete (above)"
            print(damaged.isEmpty ? sound : "\n\(damaged.count) damaged records or blobs:")
            for d in damaged { print("  \(d)") }
        }
    }
}
