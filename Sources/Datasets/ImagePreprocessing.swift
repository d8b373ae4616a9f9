// Image preprocessing for ViT-style encoders, as Hugging Face's PIL-backed image processors do it:
// resize (ImageResize.swift), centre crop, rescale, normalise, channels first; settings read from a
// preprocessor_config.json. Deliberately no augmentation and no ConvNeXt crop_pct.

import Foundation

/// Normalised pixel values ready for a vision encoder: [3, height, width], channels first.
public struct PixelValues: Sendable, Equatable {
    public let height: Int
    public let width: Int
    public var values: [Float]
}

/// The steps of a Hugging Face image processor (ViTImageProcessor, CLIPImageProcessor, …) with the
/// PIL backend, in its order: resize, centre crop, rescale, normalise.
public struct ImagePreprocessing: Sendable, Equatable, Codable {
    /// Where the resize step goes.
    public enum ResizeTarget: Sendable, Equatable, Codable {
        /// Exactly this size, ignoring the aspect ratio (`size: {height, width}`).
        case size(height: Int, width: Int)
        /// The shorter side to this length, the longer in proportion, truncated
        /// (`size: {shortest_edge}`).
        case shortestEdge(Int)
    }

    /// Height and width of the centre crop.
    public struct CropSize: Sendable, Equatable, Codable {
        public var height: Int
        public var width: Int
        public init(height: Int, width: Int) {
            self.height = height
            self.width = width
        }
    }

    /// Nil: no resize.
    public var resize: ResizeTarget?
    /// The largest resize or crop side a configuration may give (a square of it is as many
    /// pixels as a decoded image may have, `ImageDecoder.maximumPixelCount`). A shortest-edge
    /// resize's long side follows the image's shape and is not bounded by this.
    public static let maximumSide = 1 << 14
    public var resample: ResampleFilter
    /// Nil: no crop. A crop larger than the image pads it with zeros, centred.
    public var centerCrop: CropSize?
    /// Multiplies the 8-bit values (usually 1/255); nil: no rescale.
    public var rescaleFactor: Double?
    /// Per-channel mean and standard deviation subtracted and divided after rescaling; nil: none.
    public var mean: [Float]?
    public var std: [Float]?
    /// `do_convert_rgb` (CLIP's processors): a transparent image is composited onto white, as
    /// transformers' convert_to_rgb does, before anything else; nil: its alpha is dropped (PIL's
    /// convert("RGB")). Nil rather than false, so that settings without it encode as they did.
    public var alphaOnWhite: Bool?

    public init(
        resize: ResizeTarget?, resample: ResampleFilter = .bilinear, centerCrop: CropSize? = nil,
        rescaleFactor: Double? = 1.0 / 255.0, mean: [Float]? = nil, std: [Float]? = nil, alphaOnWhite: Bool = false
    ) {
        precondition((mean == nil) == (std == nil), "mean and std are given together")
        precondition(mean.map { $0.count == 3 } ?? true && std.map { $0.count == 3 && !$0.contains(0) } ?? true,
                     "mean \(mean ?? []) and std \(std ?? []) need three entries, std none zero")
        self.resize = resize
        self.resample = resample
        self.centerCrop = centerCrop
        self.rescaleFactor = rescaleFactor
        self.mean = mean
        self.std = std
        self.alphaOnWhite = alphaOnWhite ? true : nil
    }

    /// The height and width an image of `height`×`width` has after resizing.
    public func resizedSize(height: Int, width: Int) -> (height: Int, width: Int) {
        switch resize {
        case nil:
            return (height, width)
        case .size(let targetHeight, let targetWidth):
            return (targetHeight, targetWidth)
        case .shortestEdge(let edge):
            // Hugging Face's get_resize_output_image_size(default_to_square=False).
            let (short, long) = width <= height ? (width, height) : (height, width)
            let newLong = Int(Double(edge * long) / Double(short))
            return width <= height ? (newLong, edge) : (edge, newLong)
        }
    }

    /// The height and width of the output for an input of `height`×`width`.
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        if let centerCrop {
            return (centerCrop.height, centerCrop.width)
        }
        return resizedSize(height: height, width: width)
    }

    /// Runs every step on `image`.
    public func callAsFunction(_ image: RGBImage) -> PixelValues {
        let size = resizedSize(height: image.height, width: image.width)
        let resized = resize == nil ? image : ImageResizer.resize(image, height: size.height, width: size.width, filter: resample)
        let cropped = centerCrop.map { Self.centerCropped(resized, to: $0) } ?? resized
        let pixelCount = cropped.height * cropped.width
        var values = [Float](repeating: 0, count: 3 * pixelCount)
        let scale = rescaleFactor ?? 1
        for channel in 0..<3 {
            let mean = mean?[channel] ?? 0
            let std = std?[channel] ?? 1
            for pixel in 0..<pixelCount {
                // Hugging Face rescales in double and rounds to float, then normalises in float.
                let rescaled = Float(Double(cropped.pixels[3 * pixel + channel]) * scale)
                values[channel * pixelCount + pixel] = self.mean == nil ? rescaled : (rescaled - mean) / std
            }
        }
        return PixelValues(height: cropped.height, width: cropped.width, values: values)
    }

    /// The centre `size` of `image`: offset ⌊(in − out)/2⌋ when cropping, and ⌈(out − in)/2⌉ of
    /// zero padding on the top/left when the image is smaller (Hugging Face's center_crop).
    static func centerCropped(_ image: RGBImage, to size: CropSize) -> RGBImage {
        func sourceIndex(_ output: Int, input: Int, target: Int) -> Int? {
            let offset = target <= input ? (input - target) / 2 : -((target - input + 1) / 2)
            let index = output + offset
            return index >= 0 && index < input ? index : nil
        }
        var pixels = [UInt8](repeating: 0, count: size.height * size.width * 3)
        for y in 0..<size.height {
            guard let sourceY = sourceIndex(y, input: image.height, target: size.height) else { continue }
            for x in 0..<size.width {
                guard let sourceX = sourceIndex(x, input: image.width, target: size.width) else { continue }
                let from = (sourceY * image.width + sourceX) * 3
                let to = (y * size.width + x) * 3
                pixels[to] = image.pixels[from]
                pixels[to + 1] = image.pixels[from + 1]
                pixels[to + 2] = image.pixels[from + 2]
            }
        }
        return RGBImage(height: size.height, width: size.width, pixels: pixels)
    }
}

extension ImagePreprocessing {
    /// Reads the settings from a Hugging Face preprocessor_config.json file.
    public init(preprocessorConfigFile path: String) throws(DatasetError) {
        try self.init(preprocessorConfig: readWholeFile(path), file: path)
    }

    /// Reads the settings from a preprocessor_config.json's bytes; `file` names it in messages.
    ///
    /// Keys read (others are ignored): do_resize, size, resample, do_center_crop, crop_size,
    /// do_rescale, rescale_factor, do_normalize, image_mean, image_std, crop_pct, do_convert_rgb,
    /// and image_processor_type / feature_extractor_type to interpret an old integer `size` and
    /// pick the defaults. A missing `do_*` counts as true except do_center_crop and do_convert_rgb,
    /// which a CLIP processor turns on (the crop when crop_size is given), and a missing resample
    /// is bilinear (bicubic for CLIP), as in each processor's class; a step that is on needs its
    /// values.
    public init(preprocessorConfig bytes: [UInt8], file: String) throws(DatasetError) {
        let config: PreprocessorConfig
        do {
            config = try JSONDecoder().decode(PreprocessorConfig.self, from: Data(bytes))
        } catch let DecodingError.typeMismatch(_, context) {
            throw .invalidPreprocessorConfig(file: file, detail: "\(Self.keyPath(context)): \(context.debugDescription)")
        } catch let DecodingError.dataCorrupted(context) {
            throw .invalidPreprocessorConfig(file: file, detail: "not valid JSON: \(context.underlyingError.map { "\($0)" } ?? context.debugDescription)")
        } catch {
            throw .invalidPreprocessorConfig(file: file, detail: "\(error)")
        }
        func fault(_ detail: String) -> DatasetError { .invalidPreprocessorConfig(file: file, detail: detail) }

        if let cropPercentage = config.cropPercentage, cropPercentage != 1 {
            throw fault("crop_pct \(cropPercentage) (ConvNeXt-style resizing) is not supported")
        }
        let type = config.imageProcessorType ?? config.featureExtractorType ?? ""
        let isCLIP = type.hasPrefix("CLIP") || type.hasPrefix("ChineseCLIP")
        var resize: ResizeTarget?
        if config.doResize ?? true {
            guard let size = config.size else { throw fault("do_resize is on but \"size\" is missing") }
            switch size {
            case .square(let edge) where isCLIP:
                resize = .shortestEdge(edge)
            case .square(let edge):
                resize = .size(height: edge, width: edge)
            case .keyed(let keys):
                if let height = keys["height"] ?? nil, let width = keys["width"] ?? nil {
                    resize = .size(height: height, width: width)
                } else if let edge = keys["shortest_edge"] ?? nil, (keys["longest_edge"] ?? nil) == nil {
                    resize = .shortestEdge(edge)
                } else {
                    throw fault("size \(keys.compactMapValues { $0 }) is not supported (use height+width or shortest_edge)")
                }
            }
            let sides: [Int] = switch resize! {
            case .size(let height, let width): [height, width]
            case .shortestEdge(let edge): [edge]
            }
            guard sides.allSatisfy({ $0 > 0 }) else { throw fault("size \(sides) must be positive") }
            // A side of 100000 had aborted extract on a 30 GB allocation.
            guard sides.allSatisfy({ $0 <= Self.maximumSide }) else { throw fault("size \(sides) is over \(Self.maximumSide) pixels a side") }
        }
        let resampleCode = config.resample ?? (isCLIP ? ResampleFilter.bicubic : ResampleFilter.bilinear).rawValue
        guard let resample = ResampleFilter(rawValue: resampleCode) else {
            throw fault("resample \(resampleCode) is not supported (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)")
        }
        var centerCrop: CropSize?
        if config.doCenterCrop ?? (isCLIP && config.cropSize != nil) {
            guard let crop = config.cropSize else { throw fault("do_center_crop is on but \"crop_size\" is missing") }
            switch crop {
            case .square(let edge):
                centerCrop = CropSize(height: edge, width: edge)
            case .keyed(let keys):
                guard let height = keys["height"] ?? nil, let width = keys["width"] ?? nil else {
                    throw fault("crop_size needs height and width")
                }
                centerCrop = CropSize(height: height, width: width)
            }
            guard centerCrop!.height > 0 && centerCrop!.width > 0 else { throw fault("crop_size must be positive") }
            guard centerCrop!.height <= Self.maximumSide && centerCrop!.width <= Self.maximumSide else {
                throw fault("crop_size \(centerCrop!.height)×\(centerCrop!.width) is over \(Self.maximumSide) pixels a side")
            }
        }
        let rescaleFactor = (config.doRescale ?? true) ? (config.rescaleFactor ?? 1.0 / 255.0) : nil
        var mean: [Float]?
        var std: [Float]?
        if config.doNormalize ?? true {
            guard let configMean = config.imageMean, let configStd = config.imageStd else {
                throw fault("do_normalize is on but image_mean or image_std is missing")
            }
            mean = configMean.channels
            std = configStd.channels
            guard mean!.count == 3 && std!.count == 3 else { throw fault("image_mean and image_std need 3 entries") }
            guard !std!.contains(0) else { throw fault("image_std \(std!) contains a zero") }
        }
        self.init(
            resize: resize, resample: resample, centerCrop: centerCrop, rescaleFactor: rescaleFactor,
            mean: mean, std: std, alphaOnWhite: config.doConvertRGB ?? isCLIP)
    }

    private static func keyPath(_ context: DecodingError.Context) -> String {
        context.codingPath.map(\.stringValue).joined(separator: ".")
    }
}

/// The keys of a preprocessor_config.json this target reads, spelt as in the file.
private struct PreprocessorConfig: Decodable {
    /// An integer (old configs) or an object such as {"height": 224, "width": 224}.
    enum Size: Decodable {
        case square(Int)
        case keyed([String: Int?])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let edge = try? container.decode(Int.self) {
                self = .square(edge)
            } else {
                self = .keyed(try container.decode([String: Int?].self))
            }
        }
    }

    /// One number for all channels, or one per channel.
    enum Channels: Decodable {
        case one(Float)
        case each([Float])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let value = try? container.decode(Float.self) {
                self = .one(value)
            } else {
                self = .each(try container.decode([Float].self))
            }
        }

        var channels: [Float] {
            switch self {
            case .one(let value): return [value, value, value]
            case .each(let values): return values
            }
        }
    }

    var doResize: Bool?
    var size: Size?
    var resample: Int?
    var doCenterCrop: Bool?
    var cropSize: Size?
    var cropPercentage: Double?
    var doRescale: Bool?
    var rescaleFactor: Double?
    var doNormalize: Bool?
    var imageMean: Channels?
    var imageStd: Channels?
    var imageProcessorType: String?
    var featureExtractorType: String?
    var doConvertRGB: Bool?

    enum CodingKeys: String, CodingKey {
        case doResize = "do_resize"
        case size
        case resample
        case doCenterCrop = "do_center_crop"
        case cropSize = "crop_size"
        case cropPercentage = "crop_pct"
        case doRescale = "do_rescale"
        case rescaleFactor = "rescale_factor"
        case doNormalize = "do_normalize"
        case imageMean = "image_mean"
        case imageStd = "image_std"
        case imageProcessorType = "image_processor_type"
        case featureExtractorType = "feature_extractor_type"
        case doConvertRGB = "do_convert_rgb"
    }
}
