// LST's pruned side-block initialisation against an independent numpy computation from the same
// checkpoint files (Fixtures/make_lst_fixture.py: a tiny random BERT, and the committed tiny ViT),
// and the top-blocks blob against the weights it copies.
import Encoders
import Foundation
import SafeTensors
import Testing
import TensorCore

@Suite struct SideBlobTests {
    @Test(arguments: ["tiny_bert", "tiny_vit"])
    func lstPruningMatchesNumpy(_ model: String) throws {
        let folder = encoderFixtures.appendingPathComponent(model)
        let blocks = model == "tiny_bert" ? try BertEncoder(folder: folder).sideBlocks : try ViTEncoder(folder: folder).sideBlocks
        let expected = try SafeTensorsFile(path: folder.appendingPathComponent("lst_expected.safetensors").path)
        for r in [2, 4] {
            let blob = try SideBlobs.lst(blocks, reduction: r)
            #expect(blob.name == "lst.r\(r)")
            let names = expected.names.filter { $0.hasPrefix("r\(r)/") }.map { String($0.dropFirst("r\(r)/".count)) }
            #expect(Set(blob.tensors.map(\.name)) == Set(names), "r=\(r): tensor names differ")
            for (name, tensor) in blob.tensors {
                let reference = try expected.tensor("r\(r)/\(name)")
                #expect(tensor.shape == reference.shape, "r=\(r) \(name): \(tensor.shape) vs \(reference.shape)")
                let worst = zip(tensor.scalars, reference.scalars).map { abs($0 - $1) }.max() ?? 0
                #expect(worst <= 1e-7, "r=\(r) \(name): \(worst)")
            }
            #expect(blob.metadata["reduction"] == String(r))
            #expect(blob.metadata["layout"] == (model == "tiny_bert" ? "post-ln" : "pre-ln"))
            #expect(blob.metadata["heads"] == "4" && blob.metadata["layers"] == "2" && blob.metadata["activation"] == "gelu")
        }
        // Side width 16/8 = 2 cannot hold 4 heads; 3 does not divide the width.
        #expect(throws: EncoderError.self) { try SideBlobs.lst(blocks, reduction: model == "tiny_bert" ? 8 : 16) }
        #expect(throws: EncoderError.self) { try SideBlobs.lst(blocks, reduction: 3) }
    }

    @Test func lstShapesForMiniLM() throws {
        let folder = try #require(miniLMFolder(), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let blob = try SideBlobs.lst(try BertEncoder(folder: folder).sideBlocks, reduction: 8)
        let shapes = Dictionary(uniqueKeysWithValues: blob.tensors.map { ($0.name, $0.tensor.shape) })
        #expect(shapes["embeddings.kept"] == [48])
        #expect(shapes["block.6.attention.query.weight"] == [48, 48] && shapes["block.6.attention.output.weight"] == [48, 48])
        #expect(shapes["block.1.intermediate.weight"] == [192, 48] && shapes["block.1.output.weight"] == [48, 192])
        #expect(shapes["block.3.output.norm.bias"] == [48] && shapes["final_norm.weight"] == nil)
        #expect(blob.tensors.count == 1 + 6 * 16)
    }

    @Test func topBlocksCopyTheLastBlocksWhole() throws {
        let folder = encoderFixtures.appendingPathComponent("tiny_bert")
        let encoder = try BertEncoder(folder: folder)
        let blob = try SideBlobs.topBlocks(encoder.sideBlocks, count: 1)
        let tensors = Dictionary(uniqueKeysWithValues: blob.tensors.map { ($0.name, $0.tensor) })
        #expect(blob.metadata["count"] == "1" && blob.metadata["layout"] == "post-ln")
        #expect(tensors.count == 16 && tensors.keys.allSatisfy { $0.hasPrefix("block.2.") })
        #expect(tensors["block.2.attention.query.weight"] == encoder.weights.layers[1].query.weight)
        #expect(tensors["block.2.output.norm.weight"] == encoder.weights.layers[1].outputNorm.gain)
        #expect(tensors["block.2.intermediate.weight"]?.shape == [32, 16])

        let vit = try SideBlobs.topBlocks(try ViTEncoder(folder: encoderFixtures.appendingPathComponent("tiny_vit")).sideBlocks, count: 2)
        let names = Set(vit.tensors.map(\.name))
        #expect(names.contains("block.1.norm1.weight") && names.contains("block.2.norm2.bias") && names.contains("final_norm.weight"))
        #expect(vit.tensors.count == 2 * 16 + 2)
        #expect(throws: EncoderError.self) { try SideBlobs.topBlocks(encoder.sideBlocks, count: 3) }
    }
}
