/// An 8-bit RGB image: what the image networks take as input.
///
/// Layout: `pixels` holds `height` rows of `width` pixels, top row first, each pixel three
/// bytes R, G, B (interleaved, row-major, no row padding). The decode library's `RGBImage`
/// has the same layout; callers convert, and resize to the network's input size.
public struct RGBFrame: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// `width * height * 3` bytes, interleaved RGB, row-major.
    public var pixels: [UInt8]

    /// - Precondition: positive dimensions and `pixels.count == width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 1 && height >= 1, "RGBFrame dimensions must be positive, got \(width) x \(height)")
        precondition(pixels.count == width * height * 3,
                     "RGBFrame has \(pixels.count) bytes, expected \(width) x \(height) x 3 = \(width * height * 3)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}
