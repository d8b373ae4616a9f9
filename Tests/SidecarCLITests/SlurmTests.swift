// Sidecar on a real Slurm: a single-node cluster started on localhost (LocalSlurm) runs a sharded
// extraction as a job array with `sbatch --wait`, each task taking its shard from the array
// variables (`--shard auto`); the merged shards must equal a local extraction. Skipped, with the
// reason and the daemons' logs, where Slurm cannot run (not root, packages missing, daemons fail).
// XCTest rather than swift-testing for XCTSkip: a skip must read as a skip, not as a pass.
import Encoders
import Foundation
import XCTest

final class SlurmTests: XCTestCase {
    /// Starts the cluster for one test and stops it (and every job on it) however the test ends.
    func withLocalSlurm(_ body: (LocalSlurm) throws -> Void) throws {
        let slurm: LocalSlurm
        do {
            slurm = try LocalSlurm.start()
        } catch let unavailable as LocalSlurm.Unavailable {
            throw XCTSkip("Slurm cannot run here: \(unavailable)")
        }
        defer { slurm.stop() }
        try body(slurm)
    }

    /// The per-split digests of `sidecar inspect --json`.
    func splitDigests(_ cache: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: String] {
        let result = try runSidecar(["inspect", cache, "--json"])
        XCTAssertEqual(result.status, 0, "inspect \(cache): \(result.err)", file: file, line: line)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any])
        var digests: [String: String] = [:]
        for split in report["splits"] as? [[String: Any]] ?? [] {
            XCTAssertEqual(split["complete"] as? Bool, true, "\(cache): \(split)", file: file, line: line)
            digests[split["name"] as! String] = split["digest"] as? String
        }
        return digests
    }

    func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    // Later steps (e.g. `sidecar sweep --shard auto` as a job array, then its merged results
    // against a local run) belong in their own test methods on `withLocalSlurm`.
    func testShardedExtractionAsAJobArrayMergesIntoTheLocalExtraction() throws {
        let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sidecar-slurm-work-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let extract = ["extract"] + shardArguments

        try withLocalSlurm { slurm in
            let minilm = try BackboneFolder.resolve("minilm").path
            let started = Date()
            // Each task's own line: the shard comes from SLURM_ARRAY_TASK_ID / _COUNT.
            let script = """
                #!/bin/sh
                set -eu
                export SIDECAR_MINILM_DIR=\(quoted(minilm))
                exec \(quoted(sidecarBinary().path)) \(extract.map(quoted).joined(separator: " ")) \\
                    --shard auto --out \(quoted(work.path))/shard-"$SLURM_ARRAY_TASK_ID"

                """
            let job = try slurm.submit(script: script, arguments: ["--array=0-2"], timeout: 180)
            XCTAssertEqual(job.status, 0, "sbatch --wait: \(job.sbatchOutput)\n\(job.allOutput)\n\(slurm.logTails())")
            XCTAssertEqual(job.outputs.count, 3, "one output per array task: \(job.outputs.keys.sorted())")
            let shards = (0..<3).map { work.appendingPathComponent("shard-\($0)").path }
            for (i, shard) in shards.enumerated() {
                let output = job.outputs["job-\(job.jobID)_\(i).out"] ?? ""
                XCTAssertTrue(output.contains("extracted shard \(i)/3"), "task \(i) printed: \(output)")
                XCTAssertTrue(FileManager.default.fileExists(atPath: shard + "/data.mdb"), "task \(i) wrote no cache at \(shard)")
            }
            print("Slurm: daemons up, 3-task extraction array done in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")

            let merged = work.appendingPathComponent("merged").path
            let merge = try runSidecar(["merge"] + shards + ["--out", merged])
            XCTAssertEqual(merge.status, 0, merge.err)
            let local = work.appendingPathComponent("local").path
            var environment = ProcessInfo.processInfo.environment
            environment["SIDECAR_MINILM_DIR"] = minilm
            let whole = try runSidecar(extract + ["--out", local], environment: environment)
            XCTAssertEqual(whole.status, 0, whole.err)
            let expected = try splitDigests(local)
            XCTAssertEqual(Set(expected.keys), ["train", "val", "test"])
            XCTAssertEqual(try splitDigests(merged), expected)
        }
    }
}
