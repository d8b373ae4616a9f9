// Shards: the i-th of N disjoint parts of a job, as a job array hands them out (`--shard i/N`, or
// `--shard auto` from Slurm's array variables), and the slice of each split an extraction shard
// holds. Not a scheduler: the cluster's engine runs the parts; a shard only knows which one it is.
import Foundation

/// A bad `--shard` value or job-array environment, with the flag and what to do.
public struct ShardError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Part `index` of `count` (0 ≤ index < count).
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    /// More parts than any job array holds, and few enough that index × chunks cannot overflow.
    public static let maxCount = 1_000_000

    public init(index: Int, count: Int) throws {
        guard (1...Self.maxCount).contains(count) else { throw ShardError("shard \(index)/\(count): the count must be in 1...\(Self.maxCount)") }
        guard (0..<count).contains(index) else {
            throw ShardError("shard \(index)/\(count): the index must be in 0...\(count - 1) (shards count from 0)")
        }
        self.index = index
        self.count = count
    }

    public var description: String { "\(index)/\(count)" }

    /// Parses a `--shard` value:
    /// - `i/N`: part i of N, counted from 0;
    /// - `auto`: a Slurm job array's task, `SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of
    ///   `SLURM_ARRAY_TASK_COUNT` (so `--array=0-7` and `--array=1-8` both give 0/8…7/8);
    /// - `auto/N`: N parts, the index from Slurm as above or from Kubernetes' `JOB_COMPLETION_INDEX`
    ///   (Indexed Jobs set no count, so it is given here).
    /// The environment is read only for `auto`: a plain run inside an array job stays unsharded.
    /// Messages begin with the flag and the value, or with `source` where the value was not typed.
    public static func parse(_ text: String, flag: String = "--shard", source: String? = nil,
                             environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Shard {
        func fail(_ why: String) -> ShardError { ShardError("\(source ?? "\(flag) \(text)"): \(why)") }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count <= 2 else { throw fail("expected i/N (e.g. 0/4), auto or auto/N") }
        var count: Int?
        if parts.count == 2 {
            guard let n = Int(parts[1]), (1...maxCount).contains(n) else { throw fail("the count \"\(parts[1])\" is not an integer in 1...\(maxCount)") }
            count = n
        }
        if parts[0] != "auto" {
            guard let count else { throw fail("expected i/N (e.g. 0/4), auto or auto/N") }
            guard let index = Int(parts[0]), index >= 0 else { throw fail("the index \"\(parts[0])\" is not a non-negative integer") }
            guard index < count else { throw fail("the index must be in 0...\(count - 1) (shards count from 0)") }
            return try Shard(index: index, count: count)
        }
        if let id = environment["SLURM_ARRAY_TASK_ID"] {
            // Slurm's task ids and counts are non-negative 32-bit numbers; bounding them keeps the
            // arithmetic below exact.
            func number(_ name: String) throws -> Int? {
                guard let value = environment[name] else { return nil }
                guard let n = Int(value), (0...Int(Int32.max)).contains(n) else { throw fail("\(name)=\(value) is not an integer in 0...\(Int32.max)") }
                return n
            }
            guard let task = try number("SLURM_ARRAY_TASK_ID") else { throw fail("SLURM_ARRAY_TASK_ID=\(id) is not an integer") }
            let minimum = try number("SLURM_ARRAY_TASK_MIN") ?? 0
            guard (0...task).contains(minimum) else { throw fail("SLURM_ARRAY_TASK_MIN=\(minimum) is not a task id at most SLURM_ARRAY_TASK_ID=\(task)") }
            guard let tasks = try number("SLURM_ARRAY_TASK_COUNT") ?? count else {
                throw fail("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; give the count as --shard auto/N")
            }
            guard (1...maxCount).contains(tasks) else { throw fail("SLURM_ARRAY_TASK_COUNT=\(tasks) is not an integer in 1...\(maxCount)") }
            if let maximum = try number("SLURM_ARRAY_TASK_MAX"), maximum < minimum || maximum - minimum + 1 != tasks {
                throw fail("the job array \(minimum)-\(maximum) has \(tasks) tasks, not one per index; submit a contiguous array such as --array=0-\(tasks - 1)")
            }
            if let count, count != tasks {
                // Typically one failed task resubmitted alone (`--array=5`): an array of one.
                throw fail("the Slurm job array has \(tasks) tasks, not \(count); to redo some of them, submit the whole array "
                           + "again (--array=0-\(count - 1)): finished shards are left as they are")
            }
            guard (0..<tasks).contains(task - minimum) else {
                throw fail("SLURM_ARRAY_TASK_ID=\(task) is outside the array \(minimum)..<\(minimum + tasks)")
            }
            return try Shard(index: task - minimum, count: tasks)
        }
        if let id = environment["JOB_COMPLETION_INDEX"] {
            guard let index = Int(id), index >= 0 else { throw fail("JOB_COMPLETION_INDEX=\(id) is not a non-negative integer") }
            guard let count else { throw fail("a Kubernetes Indexed Job sets no count; give it as --shard auto/N (N = completions)") }
            guard index < count else { throw fail("JOB_COMPLETION_INDEX=\(index) is not below the count \(count)") }
            return try Shard(index: index, count: count)
        }
        throw fail("neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set; give the shard as i/N")
    }
}

/// Example indices start..<end of one split.
public struct IndexRange: Codable, Sendable, Equatable, CustomStringConvertible {
    public var start: Int
    public var end: Int

    public init(_ range: Range<Int>) {
        start = range.lowerBound
        end = range.upperBound
    }

    public var range: Range<Int> { start..<end }
    public var count: Int { end - start }
    public var description: String { "\(start)..<\(end)" }
}

/// What an extraction shard's cache holds: which part it is and, per split, the global example
/// indices it stores (records keep their global index as key, so a merge is a copy).
///
/// Each split's chunks (`chunkSize` consecutive examples, the unit extraction batches and commits)
/// are dealt out as contiguous runs, shard i taking chunks ⌊i·C/N⌋..<⌊(i+1)·C/N⌋ of C. Cutting on
/// chunk boundaries means every example is computed in exactly the batch an unsharded run with
/// the same chunk size computes it in, so the merged cache equals that run's records bit for bit.
public struct ShardInfo: Codable, Sendable, Equatable, CustomStringConvertible {
    public var index: Int
    public var count: Int
    public var chunkSize: Int
    public var ranges: [String: IndexRange]

    /// The part of each split that `shard` holds.
    public init(_ shard: Shard, chunkSize: Int, splitCounts: [String: Int]) {
        precondition(chunkSize >= 1, "ShardInfo: chunk size \(chunkSize)")
        index = shard.index
        count = shard.count
        self.chunkSize = chunkSize
        ranges = splitCounts.mapValues { total in IndexRange(Self.range(of: shard, chunkSize: chunkSize, total: total)) }
    }

    static func range(of shard: Shard, chunkSize: Int, total: Int) -> Range<Int> {
        let chunks = total / chunkSize + (total % chunkSize == 0 ? 0 : 1)
        let first = shard.index * chunks / shard.count, end = (shard.index + 1) * chunks / shard.count
        return min(first * chunkSize, total)..<min(end * chunkSize, total)
    }

    public var shard: Shard { get throws { try Shard(index: index, count: count) } }

    /// The indices of `split` this shard holds (empty for a split it has no part of).
    public func range(of split: String) -> Range<Int> { ranges[split]?.range ?? 0..<0 }

    /// "1/3 (chunks of 16)".
    public var description: String { "\(index)/\(count) (chunks of \(chunkSize))" }
}

extension ExtractionSettings {
    /// The indices of `split` this cache holds: its shard's part, or the whole split.
    public func heldRange(of split: String) -> Range<Int> {
        shard?.range(of: split) ?? 0..<(splitCounts[split] ?? 0)
    }
}
