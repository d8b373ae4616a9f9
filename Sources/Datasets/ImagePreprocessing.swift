// Image preprocessing for ViT-style encoders, as Hugging Face's PIL-backed image processors do it:
// resize with PIL's resampling filters (bit-exact: same coefficients, same fixed-point rounding,
// same two passes through 8-bit), centre crop, rescale, normalise, channels first. Deliberately no
// augmentation, no ConvNeXt crop_pct and no nearest-neighbour resampling.

import Foundation

/// PIL's resampling filters, numbered as PIL numbers them (the `resample` key of a
/// preprocessor_config.json).
public enum ResampleFilter: Int, Sendable, Codable, CaseIterable {
    case lanczos = 1
    case bilinear = 2
    case bicubic = 3
    case box = 4
    case hamming = 5

    /// Half-width of the kernel in source pixels, before widening for downscaling.
    var support: Double {
        switch self {
        case .box: return 0.5
        case .bilinear, .hamming: return 1
        case .bicubic: return 2
        case .lanczos: return 3
        }
    }

    /// The kernel at distance `x`, written with PIL's expressions so the doubles round alike.
    func weight(_ x: Double) -> Double {
        switch self {
        case .box:
            return x > -0.5 && x <= 0.5 ? 1 : 0
        case .bilinear:
            let x = abs(x)
            return x < 1 ? 1 - x : 0
        case .hamming:
            let x = abs(x)
            if x == 0 { return 1 }
            if x >= 1 { return 0 }
            let angle = x * Double.pi
            // PIL's constants are C floats (0.54f, 0.46f) promoted to double.
            return sin(angle) / angle * (Double(Float(0.54)) + Double(Float(0.46)) * cos(angle))
        case .bicubic:
            // Keys' cubic convolution with a = -0.5.
            let a = -0.5
            let x = abs(x)
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .lanczos:
            guard -3 <= x && x < 3 else { return 0 }
            return Self.sinc(x) * Self.sinc(x / 3)
        }
    }

    private static func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let angle = x * Double.pi
        return sin(angle) / angle
    }
}

/// Resizes 8-bit RGB images exactly as PIL's `Image.resize(size, filter)` does (Resample.c).
///
/// Each output pixel along an axis is a normalised weighted sum of the input pixels under the
/// kernel centred at `(i + 0.5)·scale`, `scale = in/out`. When shrinking, the kernel is widened by
/// `scale` (support·scale, argument divided by scale), so every input pixel contributes: that is
/// the antialiasing. Weights are rounded to 22 fractional bits, and the image is rounded to 8 bits
/// between the two passes, so their order matters: the horizontal pass runs first, except when the
/// height shrinks by more than twice as many pixels as the width does (H − h > 2·(W − w)), where
/// Pillow 13 runs the vertical pass first (python-pillow/Pillow#9549; Pillow 12 and older always
/// run horizontal first, and differ from this in those cases by a few units).
public enum ImageResizer {
    /// Fractional bits of the fixed-point weights (PIL: 32 - 8 - 2).
    static let precisionBits = 22

    /// `image` resized to `height`×`width` with `filter`.
    public static func resize(_ image: RGBImage, height: Int, width: Int, filter: ResampleFilter) -> RGBImage {
        precondition(height > 0 && width > 0, "resize to \(width)×\(height)")
        precondition(image.height > 0 && image.width > 0, "resize of an empty \(image.width)×\(image.height) image")
        if height == image.height && width == image.width {
            return image
        }
        if height == image.height {
            let horizontal = ResampleWeights(inputSize: image.width, outputSize: width, filter: filter)
            let pixels = horizontalPass(image.pixels, inputWidth: image.width, rows: 0..<height, weights: horizontal)
            return RGBImage(height: height, width: width, pixels: pixels)
        }
        let vertical = ResampleWeights(inputSize: image.height, outputSize: height, filter: filter)
        if width != image.width && height < image.height && image.height - height > 2 * (image.width - width) {
            let shorter = verticalPass(image.pixels, width: image.width, rowOffset: 0, weights: vertical)
            let horizontal = ResampleWeights(inputSize: image.width, outputSize: width, filter: filter)
            let pixels = horizontalPass(shorter, inputWidth: image.width, rows: 0..<height, weights: horizontal)
            return RGBImage(height: height, width: width, pixels: pixels)
        }
        var source = image.pixels
        var rowOffset = 0
        if width != image.width {
            let horizontal = ResampleWeights(inputSize: image.width, outputSize: width, filter: filter)
            let firstRow = vertical.starts[0]
            let lastRow = vertical.starts[height - 1] + vertical.counts[height - 1]
            source = horizontalPass(image.pixels, inputWidth: image.width, rows: firstRow..<lastRow, weights: horizontal)
            rowOffset = firstRow
        }
        let pixels = verticalPass(source, width: width, rowOffset: rowOffset, weights: vertical)
        return RGBImage(height: height, width: width, pixels: pixels)
    }

    // input: [H, inputWidth, 3]; returns [rows.count, weights.outputSize, 3]
    private static func horizontalPass(
        _ input: [UInt8], inputWidth: Int, rows: Range<Int>, weights: ResampleWeights
    ) -> [UInt8] {
        let outputWidth = weights.outputSize
        var output = [UInt8](repeating: 0, count: rows.count * outputWidth * 3)
        input.withUnsafeBufferPointer { input in
            weights.coefficients.withUnsafeBufferPointer { coefficients in
                output.withUnsafeMutableBufferPointer { output in
                    for (outputRow, row) in rows.enumerated() {
                        let inputRow = row * inputWidth * 3
                        for x in 0..<outputWidth {
                            let start = weights.starts[x]
                            let kernel = x * weights.kernelSize
                            var red = 1 << (precisionBits - 1)
                            var green = red
                            var blue = red
                            for tap in 0..<weights.counts[x] {
                                let weight = Int(coefficients[kernel + tap])
                                let pixel = inputRow + (start + tap) * 3
                                red += Int(input[pixel]) * weight
                                green += Int(input[pixel + 1]) * weight
                                blue += Int(input[pixel + 2]) * weight
                            }
                            let target = (outputRow * outputWidth + x) * 3
                            output[target] = clip(red)
                            output[target + 1] = clip(green)
                            output[target + 2] = clip(blue)
                        }
                    }
                }
            }
        }
        return output
    }

    // input: [rows, width, 3], row r being source row r + rowOffset; returns [outputHeight, width, 3]
    private static func verticalPass(
        _ input: [UInt8], width: Int, rowOffset: Int, weights: ResampleWeights
    ) -> [UInt8] {
        let outputHeight = weights.outputSize
        let rowLength = width * 3
        var output = [UInt8](repeating: 0, count: outputHeight * rowLength)
        input.withUnsafeBufferPointer { input in
            weights.coefficients.withUnsafeBufferPointer { coefficients in
                output.withUnsafeMutableBufferPointer { output in
                    for y in 0..<outputHeight {
                        let start = weights.starts[y] - rowOffset
                        let kernel = y * weights.kernelSize
                        for column in 0..<rowLength {
                            var sum = 1 << (precisionBits - 1)
                            for tap in 0..<weights.counts[y] {
                                sum += Int(input[(start + tap) * rowLength + column]) * Int(coefficients[kernel + tap])
                            }
                            output[y * rowLength + column] = clip(sum)
                        }
                    }
                }
            }
        }
        return output
    }

    /// A fixed-point sum back to 8 bits (PIL's clip8).
    @inline(__always)
    private static func clip(_ sum: Int) -> UInt8 {
        UInt8(clamping: sum >> precisionBits)
    }
}

/// The kernel of one axis: for each output index, the first input index, the number of taps,
/// and `kernelSize` fixed-point weights (PIL's precompute_coeffs + normalize_coeffs_8bpc).
struct ResampleWeights {
    let outputSize: Int
    let kernelSize: Int
    let starts: [Int]
    let counts: [Int]
    /// [outputSize, kernelSize], 22 fractional bits.
    let coefficients: [Int32]

    init(inputSize: Int, outputSize: Int, filter: ResampleFilter) {
        let scale = Double(inputSize) / Double(outputSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let kernelSize = Int(support.rounded(.up)) * 2 + 1
        let one = Double(1 << ImageResizer.precisionBits)
        var starts = [Int](repeating: 0, count: outputSize)
        var counts = [Int](repeating: 0, count: outputSize)
        var coefficients = [Int32](repeating: 0, count: outputSize * kernelSize)
        var weights = [Double](repeating: 0, count: kernelSize)
        for output in 0..<outputSize {
            let center = (Double(output) + 0.5) * scale
            let inverseScale = 1 / filterScale
            // Int(_:) truncates toward zero like C's (int) cast; the + 0.5 rounds.
            let start = max(Int(center - support + 0.5), 0)
            let count = min(Int(center + support + 0.5), inputSize) - start
            var total = 0.0
            for tap in 0..<count {
                weights[tap] = filter.weight((Double(tap + start) - center + 0.5) * inverseScale)
                total += weights[tap]
            }
            for tap in 0..<count {
                let weight = total != 0 ? weights[tap] / total : weights[tap]
                coefficients[output * kernelSize + tap] = Int32(weight < 0 ? -0.5 + weight * one : 0.5 + weight * one)
            }
            starts[output] = start
            counts[output] = count
        }
        self.outputSize = outputSize
        self.kernelSize = kernelSize
        self.starts = starts
        self.counts = counts
        self.coefficients = coefficients
    }
}

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
    public var resample: ResampleFilter
    /// Nil: no crop. A crop larger than the image pads it with zeros, centred.
    public var centerCrop: CropSize?
    /// Multiplies the 8-bit values (usually 1/255); nil: no rescale.
    public var rescaleFactor: Double?
    /// Per-channel mean and standard deviation subtracted and divided after rescaling; nil: none.
    public var mean: [Float]?
    public var std: [Float]?

    public init(
        resize: ResizeTarget?, resample: ResampleFilter = .bilinear, centerCrop: CropSize? = nil,
        rescaleFactor: Double? = 1.0 / 255.0, mean: [Float]? = nil, std: [Float]? = nil
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
    /// do_rescale, rescale_factor, do_normalize, image_mean, image_std, crop_pct, and
    /// image_processor_type / feature_extractor_type to interpret an old integer `size`.
    /// A missing `do_*` counts as true except do_center_crop; a step that is on needs its values.
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
        var resize: ResizeTarget?
        if config.doResize ?? true {
            guard let size = config.size else { throw fault("do_resize is on but \"size\" is missing") }
            let type = config.imageProcessorType ?? config.featureExtractorType ?? ""
            switch size {
            case .square(let edge) where type.hasPrefix("CLIP") || type.hasPrefix("ChineseCLIP"):
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
        }
        let resampleCode = config.resample ?? ResampleFilter.bilinear.rawValue
        guard let resample = ResampleFilter(rawValue: resampleCode) else {
            throw fault("resample \(resampleCode) is not supported (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)")
        }
        var centerCrop: CropSize?
        if config.doCenterCrop ?? false {
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
            mean: mean, std: std)
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
    }
}
