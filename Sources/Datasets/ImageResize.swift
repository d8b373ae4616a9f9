// Resizing 8-bit RGB images bit-exactly as PIL's Image.resize does (Resample.c): same kernels,
// same coefficients, same fixed-point rounding, same 8-bit intermediate and pass order. Used by
// ImagePreprocessing. Deliberately no nearest-neighbour filter (PIL runs it through another path).

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
/// Pillow 13 runs the vertical pass first (python-pillow/Pillow#9549; found by comparing outputs).
/// Older Pillows run horizontal first there and differ from this by a few units in those cases.
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
        let verticalFirst = height < image.height && image.height - height > 2 * (image.width - width)
        if width != image.width && verticalFirst {
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
