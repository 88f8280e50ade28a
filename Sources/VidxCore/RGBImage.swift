/// An 8-bit RGB image: a decoded frame, and what the image networks take as input.
///
/// Layout: (height, width, 3), UInt8: `height` rows of `width` pixels, top row first, each
/// pixel three bytes R, G, B (interleaved, row-major, no row padding).
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0, "RGBImage dimensions must not be negative, got \(width) x \(height)")
        precondition(pixels.count == width * height * 3,
                     "RGBImage has \(pixels.count) bytes, expected \(width) x \(height) x 3 = \(width * height * 3)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The (r, g, b) value at column x, row y.
    public func pixel(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// Mean of each channel over a rectangle.
    public func meanColor(x: Int = 0, y: Int = 0, width w: Int? = nil, height h: Int? = nil) -> (Double, Double, Double) {
        let w = w ?? width - x, h = h ?? height - y
        var sum = (0.0, 0.0, 0.0)
        for row in y..<(y + h) {
            for col in x..<(x + w) {
                let p = pixel(x: col, y: row)
                sum.0 += Double(p.0); sum.1 += Double(p.1); sum.2 += Double(p.2)
            }
        }
        let n = Double(max(1, w * h))
        return (sum.0 / n, sum.1 / n, sum.2 / n)
    }
}

