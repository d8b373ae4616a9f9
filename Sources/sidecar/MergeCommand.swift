// `sidecar merge`: join the caches of an extraction's shards (`sidecar extract --shard i/N`) into
// the one cache an unsharded extraction writes. The checks and the copy live in ActivationStore
// (CacheMerge); this parses, reports progress and prints.
import ActivationStore
import ArgumentParser
import Foundation

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Join the shard caches of a sharded extraction into one cache.",
        discussion: """
            Give every shard's cache (written by `sidecar extract --shard i/N`, all N of them, each once and \
            complete, with identical settings and --chunk-size); anything else is refused, naming the folders \
            and what differs. Records, blobs and int8 scales are copied as stored, never re-encoded, so the \
            result equals an unsharded extraction with the same settings (`sidecar inspect --json` digests \
            match). A killed merge resumes when run again, and its splits are marked complete only at the end.
            """)

    @Argument(help: "The shard caches, in any order.")
    var shards: [String] = []

    @Option(help: "The merged cache folder to create (or to resume after an interrupted merge).")
    var out: String

    func validate() throws {
        guard !shards.isEmpty else { throw ValidationError("give the shard caches to merge (sidecar merge SHARD... --out CACHE)") }
    }

    func run() throws {
        try checkWritableFolder(out)
        try checkCacheFolder(out)
        let bar = ProgressLines()
        let merged = try CacheMerge.merge(shards: shards, into: out) { bar.update($0) }
        let s = merged.manifest.settings
        print("merged \(shards.count) shards: \(s.splits.map { "\($0) \(s.splitCounts[$0] ?? 0)" }.joined(separator: ", ")) into \(out)")
    }
}

/// A plain progress line on stderr every few seconds and at the end of each split.
private final class ProgressLines {
    private var last = ContinuousClock.now

    func update(_ p: CacheMerge.Progress) {
        guard p.done == p.total || ContinuousClock.now - last > .seconds(5) else { return }
        last = .now
        standardError("merge: \(p.split) \(p.done)/\(p.total)\n")
    }
}
