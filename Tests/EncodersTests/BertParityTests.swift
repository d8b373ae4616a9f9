// The BERT forward pass against Hugging Face transformers (fp32, eager attention) with the real
// all-MiniLM-L6-v2 weights on real text: every hidden state within 1e-4 (Fixtures, made by
// make_encoder_fixtures.py).
import Encoders
import Foundation
import SafeTensors
import Testing
import TensorCore

@Suite struct BertParityTests {
    @Test func miniLMHiddenStatesMatchTransformers() throws {
        let folder = try #require(miniLMFolder(), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let encoder = try BertEncoder(folder: folder)
        let fixture = try SafeTensorsFile(path: encoderFixtures.appendingPathComponent("minilm_hidden_states.safetensors").path)
        let ids = try fixture.tensor("input_ids").scalars.map { Int32($0) }
        let types = try fixture.tensor("token_type_ids").scalars.map { Int32($0) }
        let segments = Segments(offsets: try fixture.tensor("offsets").scalars.map { Int($0) })
        let states = try encoder.hiddenStates(ids: ids, tokenTypes: types, segments: segments, layers: Set(0...6))
        for layer in 0...6 {
            let expected = try fixture.tensor("hidden_state.\(layer)")
            let actual = try #require(states[layer])
            #expect(actual.shape == expected.shape)
            let worst = zip(actual.scalars, expected.scalars).map { abs($0 - $1) }.max() ?? .infinity
            print("MiniLM hidden state \(layer): max |Swift − transformers| = \(worst)")
            #expect(worst <= 1e-4, "layer \(layer): \(worst)")
        }
    }

    @Test func onlyRequestedLayersAreReturnedAndTokenizerFeedsTheEncoder() throws {
        let folder = try #require(miniLMFolder(), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let encoder = try BertEncoder(folder: folder)
        let tokenizer = try WordPieceTokenizer(directory: folder)
        let fixture = try SafeTensorsFile(path: encoderFixtures.appendingPathComponent("minilm_hidden_states.safetensors").path)
        // The first fixture sentence, tokenised here, gives the fixture's ids and states.
        let encoding = tokenizer.encode("library for handling X.509 certificates (development files)")
        let offsets = try fixture.tensor("offsets").scalars.map { Int($0) }
        #expect(encoding.ids == (try fixture.tensor("input_ids").scalars[0..<offsets[1]].map { Int($0) }))
        let states = try encoder.hiddenStates(ids: encoding.ids.map(Int32.init), tokenTypes: encoding.tokenTypeIds.map(Int32.init),
                                              segments: Segments(lengths: [encoding.ids.count]), layers: [2])
        #expect(Array(states.keys) == [2])
        let expected = try fixture.tensor("hidden_state.2").scalars.prefix(encoding.ids.count * 384)
        let worst = zip(states[2]!.scalars, expected).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-4)
    }

    @Test func outOfRangeInputIsAnError() throws {
        let folder = try #require(miniLMFolder(), "all-MiniLM-L6-v2 is not installed: run `make setup`")
        let encoder = try BertEncoder(folder: folder)
        #expect(throws: EncoderError.self) {
            try encoder.hiddenStates(ids: [101, 999_999, 102], tokenTypes: [0, 0, 0], segments: Segments(lengths: [3]), layers: [1])
        }
        #expect(throws: EncoderError.self) {
            try encoder.hiddenStates(ids: Array(repeating: 101, count: 600), tokenTypes: Array(repeating: 0, count: 600),
                                     segments: Segments(lengths: [600]), layers: [1])
        }
    }
}
