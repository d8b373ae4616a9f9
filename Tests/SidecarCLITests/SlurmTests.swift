// Sidecar on a real Slurm: a single-node cluster started on localhost (LocalSlurm) runs a sharded
// extraction as a job array with `sbatch --wait`, each task taking its shard from the array
// variables (`--shard auto`); the merged shards must equal a local extraction. Then the sweep
// script `sweep --emit slurm` writes runs on the merged cache; its results must equal a local run's. Skipped, with the
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

    func testShardedExtractionAndASweepAsJobArraysEqualLocalRuns() throws {
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

            // Then a sweep on the merged cache, as the job array `sweep --emit slurm` writes: every
            // trial gets exactly one line, and the shards' lines equal a local run's. Two seeds make
            // two passes, so each of the two shards has one.
            let spec = work.appendingPathComponent("sweep.toml").path
            try Data("""
                [base.training]
                epochs = 2
                batch_size = 8
                [[grid]]
                head = "linear"
                [grid.set]
                layers = ["last", "all"]
                [grid.training]
                seed = [0, 1]
                [[grid]]
                head = "mlp"
                [grid.set]
                hidden = [16, 32]

                """.utf8).write(to: URL(fileURLWithPath: spec))
            let results = work.appendingPathComponent("results").path
            let scriptFile = work.appendingPathComponent("sweep.sbatch").path
            let emit = try runSidecar(["sweep", "--cache", merged, "--spec", spec, "--results", results, "--emit", "slurm",
                                       "--shards", "2", "--cpus", "1", "--binary", sidecarBinary().path, "--emit-out", scriptFile])
            XCTAssertEqual(emit.status, 0, emit.err)
            let sweepJob = try slurm.submit(script: try String(contentsOfFile: scriptFile, encoding: .utf8), timeout: 180)
            XCTAssertEqual(sweepJob.status, 0, "sbatch --wait: \(sweepJob.sbatchOutput)\n\(sweepJob.allOutput)\n\(slurm.logTails())")
            let localResults = work.appendingPathComponent("results-local").path
            let alone = try runSidecar(["sweep", "--cache", merged, "--spec", spec, "--results", localResults])
            XCTAssertEqual(alone.status, 0, alone.err)
            func lines(_ folder: String) throws -> [String: [String: Any]] {
                var byTrial: [String: [String: Any]] = [:]
                var count = 0
                for name in try FileManager.default.contentsOfDirectory(atPath: folder) where name.hasSuffix(".jsonl") {
                    for line in try String(contentsOfFile: folder + "/" + name, encoding: .utf8).split(separator: "\n") {
                        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                        byTrial[object["trial"] as! String] = object
                        count += 1
                    }
                }
                XCTAssertEqual(count, byTrial.count, "\(folder): a trial has more than one line")
                return byTrial
            }
            // The results folder did not exist when the array was submitted (--emit makes none):
            // each task made it, then logged there.
            for i in 0..<2 {
                let log = (try? String(contentsOfFile: results + "/slurm-\(sweepJob.jobID)_\(i).out", encoding: .utf8)) ?? ""
                XCTAssertTrue(log.contains("shard \(i)/2"), "task \(i) logged: \(log)")
            }
            let fromSlurm = try lines(results), fromLocal = try lines(localResults)
            XCTAssertEqual(fromSlurm.count, 6)
            XCTAssertEqual(Set(fromSlurm.keys), Set(fromLocal.keys))
            XCTAssertEqual(Set(fromSlurm.values.map { $0["shard"] as! String }), ["0/2", "1/2"])
            for (trial, line) in fromSlurm {
                XCTAssertEqual(line["status"] as? String, "ok", "\(trial): \(line["error"] ?? "")")
                XCTAssertEqual(line["metrics"] as? NSDictionary, fromLocal[trial]?["metrics"] as? NSDictionary, "trial \(trial)")
                XCTAssertEqual(line["trainable_parameters"] as? Int, fromLocal[trial]?["trainable_parameters"] as? Int)
            }
        }
    }
}
