// Image preprocessing against the committed reference numbers from PIL and Hugging Face's image
// processors (Fixtures/make_resize_fixture.py writes them), plus the crop and config rules.

import Datasets
import Foundation
import Testing

/// Fixtures/resize_fixture.json.
struct ResizeFixture: Decodable {
    struct Resize: Decodable {
        var filter: String
        var resample: Int
        var width: Int
        var height: Int
        var pixels: String
    }
    struct JPEG: Decodable {
        var bytes: String
        var pixels: String
    }
    struct Pipeline: Decodable {
        var name: String
        var shape: [Int]
        var values: [Float]
    }

    var width: Int
    var height: Int
    var input: String
    var resizes: [Resize]
    var jpeg: JPEG
    var pipelines: [Pipeline]
    var versions: [String: String]
    /// Each pipeline's preprocessor config, re-serialised as the JSON a model folder would hold.
    var configs: [String: [UInt8]] = [:]

    enum CodingKeys: String, CodingKey {
        case width, height, input, resizes, jpeg, pipelines, versions
    }

    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/resize_fixture.json").path

    static func load() throws -> ResizeFixture {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var fixture = try JSONDecoder().decode(ResizeFixture.self, from: data)
        let raw = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        for pipeline in raw["pipelines"] as! [[String: Any]] {
            let config = try JSONSerialization.data(withJSONObject: pipeline["config"]!)
            fixture.configs[pipeline["name"] as! String] = Array(config)
        }
        return fixture
    }

    var inputImage: RGBImage {
        RGBImage(height: height, width: width, pixels: hexBytes(input))
    }
}

func hexBytes(_ hex: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        bytes.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

@Suite struct ImagePreprocessingTests {
    @Test func resizeMatchesPIL() throws {
        let fixture = try ResizeFixture.load()
        let input = fixture.inputImage
        #expect(fixture.resizes.count == 25)
        for reference in fixture.resizes {
            let filter = try #require(ResampleFilter(rawValue: reference.resample))
            let resized = ImageResizer.resize(input, height: reference.height, width: reference.width, filter: filter)
            let expected = hexBytes(reference.pixels)
            let difference = zip(resized.pixels, expected).map { abs(Int($0) - Int($1)) }.max()!
            let mismatches = zip(resized.pixels, expected).filter { $0 != $1 }.count
            print("\(reference.filter) \(fixture.width)×\(fixture.height) → \(reference.width)×\(reference.height): "
                  + "max |Swift − PIL| = \(difference), \(mismatches) of \(expected.count) values differ")
            #expect(resized.height == reference.height && resized.width == reference.width)
            #expect(difference <= 1, "\(reference.filter) to \(reference.width)×\(reference.height)")
        }
    }

    @Test func pipelinesMatchHuggingFace() throws {
        let fixture = try ResizeFixture.load()
        #expect(fixture.pipelines.count == 3)
        for reference in fixture.pipelines {
            let config = try #require(fixture.configs[reference.name])
            let preprocessing = try ImagePreprocessing(preprocessorConfig: config, file: "\(reference.name).json")
            let output = preprocessing(fixture.inputImage)
            #expect([3, output.height, output.width] == reference.shape)
            let size = preprocessing.outputSize(height: fixture.height, width: fixture.width)
            #expect([3, size.height, size.width] == reference.shape)
            let difference = zip(output.values, reference.values).map { abs($0 - $1) }.max()!
            print("pipeline \(reference.name): max |Swift − Hugging Face| = \(difference)")
            #expect(difference <= 1e-5, "\(reference.name)")
        }
    }

    @Test func configSettingsAreRead() throws {
        let fixture = try ResizeFixture.load()
        let clip = try ImagePreprocessing(preprocessorConfig: fixture.configs["clip"]!, file: "clip.json")
        #expect(clip.resize == .shortestEdge(11))
        #expect(clip.resample == .bicubic)
        #expect(clip.centerCrop == ImagePreprocessing.CropSize(height: 9, width: 9))
        #expect(clip.resizedSize(height: 17, width: 23) == (11, 14))
        #expect(clip.resizedSize(height: 40, width: 20) == (22, 11))

        // An old-style integer size is square, except for CLIP, where it is the shortest edge.
        let old = #"{"size": 224, "resample": 3, "image_mean": 0.5, "image_std": [0.5, 0.5, 0.5]}"#
        let vit = try ImagePreprocessing(preprocessorConfig: Array(old.utf8), file: "old.json")
        #expect(vit.resize == .size(height: 224, width: 224))
        #expect(vit.mean == [0.5, 0.5, 0.5])
        let oldCLIP = #"{"feature_extractor_type": "CLIPFeatureExtractor", "size": 224, "do_normalize": false}"#
        #expect(try ImagePreprocessing(preprocessorConfig: Array(oldCLIP.utf8), file: "c.json").resize == .shortestEdge(224))
    }

    /// Keys a config leaves out take the defaults of its processor's class: CLIPImageProcessor
    /// resamples bicubic, crops (to its crop_size) and composites transparency onto white;
    /// ViTImageProcessor resamples bilinear and does none of the others.
    @Test func missingKeysTakeTheProcessorsDefaults() throws {
        let bare = #""size": {"shortest_edge": 24}, "crop_size": {"height": 24, "width": 24}, "do_normalize": false"#
        let clip = try ImagePreprocessing(preprocessorConfig: Array(#"{"image_processor_type": "CLIPImageProcessor", \#(bare)}"#.utf8), file: "c.json")
        #expect(clip.resample == .bicubic && clip.centerCrop == ImagePreprocessing.CropSize(height: 24, width: 24) && clip.alphaOnWhite == true)
        let vit = try ImagePreprocessing(preprocessorConfig: Array(#"{"image_processor_type": "ViTImageProcessor", \#(bare)}"#.utf8), file: "v.json")
        #expect(vit.resample == .bilinear && vit.centerCrop == nil && vit.alphaOnWhite == nil)
        let told = #"{"image_processor_type": "CLIPImageProcessor", "do_convert_rgb": false, "do_center_crop": false, "resample": 2, \#(bare)}"#
        let plain = try ImagePreprocessing(preprocessorConfig: Array(told.utf8), file: "t.json")
        #expect(plain.resample == .bilinear && plain.centerCrop == nil && plain.alphaOnWhite == nil)
        // Settings without the key encode as they did before it existed (caches compare them).
        #expect(!String(decoding: try JSONEncoder().encode(vit), as: UTF8.self).contains("alpha"))
    }

    @Test func configFaultsNameTheFile() throws {
        let cases: [(String, String)] = [
            (#"{"do_normalize": false}"#, "do_resize is on but \"size\" is missing"),
            (#"{"size": {"height": 4, "width": 4}, "resample": 0, "do_normalize": false}"#, "resample 0 is not supported"),
            (#"{"size": {"longest_edge": 4}, "do_normalize": false}"#, "is not supported"),
            (#"{"size": {"height": 4, "width": 4}}"#, "image_mean or image_std is missing"),
            (#"{"size": {"height": 4, "width": 4}, "do_normalize": false, "do_center_crop": true}"#, "crop_size"),
            (#"{"size": {"height": 4, "width": 4}, "image_mean": [0.5], "image_std": [1, 1, 1]}"#, "3 entries"),
            (#"{"size": {"height": 4, "width": 4}, "image_mean": 0.5, "image_std": 0}"#, "contains a zero"),
            (#"{"size": "big"}"#, "size"),
            (#"{"size": {"height": 4, "width": 4}, "do_normalize": false, "crop_pct": 0.875}"#, "crop_pct"),
            (#"{"size": "#, "not valid JSON"),
            (#"{"size": {"height": 100000, "width": 100000}, "do_normalize": false}"#, "size [100000, 100000] is over 16384 pixels a side"),
            (#"{"size": 16, "do_normalize": false, "do_center_crop": true, "crop_size": 20000}"#, "crop_size 20000×20000 is over 16384 pixels a side"),
        ]
        for (json, fragment) in cases {
            do {
                _ = try ImagePreprocessing(preprocessorConfig: Array(json.utf8), file: "/models/x/preprocessor_config.json")
                Issue.record("accepted \(json)")
            } catch {
                guard case .invalidPreprocessorConfig = error else {
                    Issue.record("unexpected \(error)")
                    continue
                }
                let message = "\(error)"
                #expect(message.hasPrefix("/models/x/preprocessor_config.json: "), "\(message)")
                #expect(message.contains(fragment), "\(message)")
            }
        }
    }

    @Test func centerCropCropsAndPads() {
        let image = testImage(height: 5, width: 6)
        // Cropping 5×6 to 3×3 starts at row ⌊2/2⌋ = 1, column ⌊3/2⌋ = 1.
        let cropped = ImagePreprocessing(resize: nil, centerCrop: .init(height: 3, width: 3), rescaleFactor: nil)
        let values = cropped(image)
        #expect(values.height == 3 && values.width == 3)
        #expect(values.values[0] == Float(image[1, 1, 0]))
        #expect(values.values[9 + 4] == Float(image[2, 2, 1]))
        // Padding 5×6 to 8×7 puts ⌈3/2⌉ = 2 zero rows on top and ⌈1/2⌉ = 1 zero column on the left.
        let padded = ImagePreprocessing(resize: nil, centerCrop: .init(height: 8, width: 7), rescaleFactor: nil)(image)
        #expect(padded.values[0 * 7 + 3] == 0)
        #expect(padded.values[2 * 7 + 0] == 0)
        #expect(padded.values[2 * 7 + 1] == Float(image[0, 0, 0]))
        #expect(padded.values[6 * 7 + 6] == Float(image[4, 5, 0]))
        #expect(padded.values[7 * 7 + 6] == 0)
    }

    @Test func rescaleAndNormaliseChannelsFirst() {
        let image = RGBImage(height: 1, width: 2, pixels: [0, 51, 255, 255, 102, 0])
        let preprocessing = ImagePreprocessing(resize: nil, rescaleFactor: 1.0 / 255.0, mean: [0.5, 0.2, 0], std: [0.5, 0.1, 1])
        let output = preprocessing(image)
        // [3, 1, 2]: red (0, 255), green (51, 102), blue (255, 0).
        let expected: [Float] = [-1, 1, 0, 2, 1, 0]
        #expect(zip(output.values, expected).allSatisfy { abs($0 - $1) < 1e-6 }, "\(output.values)")
    }

    @Test func resizeKeepsAConstantImageConstant() {
        let flat = RGBImage(height: 7, width: 9, pixels: [UInt8](repeating: 0, count: 7 * 9 * 3).enumerated().map { [200, 13, 255][$0.offset % 3] })
        for filter in ResampleFilter.allCases {
            for (height, width) in [(3, 4), (20, 31), (7, 2)] {
                let resized = ImageResizer.resize(flat, height: height, width: width, filter: filter)
                #expect(resized.pixels.enumerated().allSatisfy { $0.element == [200, 13, 255][$0.offset % 3] }, "\(filter)")
            }
        }
    }
}
