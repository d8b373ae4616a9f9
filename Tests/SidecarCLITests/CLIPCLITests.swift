// CLIP's vision tower as a user runs it: `sidecar extract --backbone <a CLIPVisionModel folder>`
// on an ImageFolder of PNGs of mixed sizes (resized by their shortest edge and centre-cropped as
// CLIP's preprocessor_config.json says), `inspect` naming the architecture, an LST head trained on
// the cache's quick-GELU side blocks, and `predict` on the image files giving eval's logits.
import Foundation
import Testing

@Suite struct CLIPCLITests {
    @Test func extractInspectFitAndPredictThroughTheTinyCLIP() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("clip-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var generator = SystemRandomNumberGenerator()
        for (split, count) in [("train", 8), ("test", 4)] {
            for (c, name) in ["dark", "light"].enumerated() {
                let folder = root.appendingPathComponent("data/\(split)/\(name)")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for i in 0..<count {
                    // Portrait, landscape and square: the shortest edge becomes 32, then a 32×32 crop.
                    let (height, width) = [(40, 34), (30, 52), (36, 36)][i % 3]
                    let pixels = (0..<(height * width * 3)).map { _ in UInt8(c * 120 + Int(generator.next() % 120)) }
                    try Data(encodePNG(pixels, height: height, width: width)).write(to: folder.appendingPathComponent("\(i).png"))
                }
            }
        }
        let tinyCLIP = repository.appendingPathComponent("Tests/EncodersTests/Fixtures/tiny_clip").path
        let cache = root.appendingPathComponent("cache").path
        let extract = try runSidecar(["extract", "--dataset", root.appendingPathComponent("data").path, "--backbone", tinyCLIP,
                                      "--out", cache, "--dtype", "f32", "--lst-reductions", "2", "--top-blocks", "1"])
        try #require(extract.status == 0, "\(extract.err)")
        #expect(extract.out.contains("extracted train 16, test 8"), "\(extract.out)")

        let inspect = try runSidecar(["inspect", cache])
        try #require(inspect.status == 0, "\(inspect.err)")
        #expect(inspect.out.contains("backbone   tiny_clip [clip-vit], 2 layers, width 32"), "\(inspect.out)")
        let json = try runSidecar(["inspect", cache, "--json", "--verify"])
        try #require(json.status == 0, "\(json.err)")
        #expect(json.out.contains("\"architecture\":\"clip-vit\""), "\(json.out)")

        let head = root.appendingPathComponent("lst").path
        let fit = try runSidecar(["fit", "--cache", cache, "--head", "lst", "--set", "reduction=2", "--epochs", "1", "--batch-size", "4", "--out", head])
        try #require(fit.status == 0, "\(fit.err)")
        let cached = try PredictCLITests.evalLogits(head, cache: cache)
        let lines = try PredictCLITests.predict(head, input: root.appendingPathComponent("data/test").path, extra: ["--backbone", tinyCLIP])
        #expect(lines.map { ($0["file"] as! String).split(separator: "/").suffix(2).joined(separator: "/") }
                == ["dark", "light"].flatMap { c in (0..<4).map { "\(c)/\($0).png" } })
        let difference = PredictCLITests.maxDifference(lines.map { $0["logits"] as! [Double] }, cached)
        #expect(cached.count == 8 && difference <= 1e-4, "predict and eval differ by \(difference)")
    }
}
