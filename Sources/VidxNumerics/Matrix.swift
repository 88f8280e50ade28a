/// A dense Float32 matrix stored row-major: element (r, c) is `data[r * cols + c]`.
///
/// A value type backed by `[Float]` (copy-on-write). Hot loops in this module work on
/// `data` through `withUnsafe(Mutable)BufferPointer`, never through the subscript.
public struct Matrix: Sendable, Equatable {
    /// Number of rows.
    public var rows: Int
    /// Number of columns (the length of one row).
    public var cols: Int
    /// The elements, row-major; `data.count == rows * cols`.
    public var data: [Float]

    /// A `rows x cols` matrix of zeros.
    public init(rows: Int, cols: Int) {
        precondition(rows >= 0 && cols >= 0, "Matrix dimensions must be non-negative")
        self.rows = rows
        self.cols = cols
        self.data = [Float](repeating: 0, count: rows * cols)
    }

    /// A `rows x cols` matrix over `data`, row-major.
    /// - Precondition: `data.count == rows * cols`.
    public init(rows: Int, cols: Int, data: [Float]) {
        precondition(rows >= 0 && cols >= 0, "Matrix dimensions must be non-negative")
        precondition(data.count == rows * cols,
                     "Matrix data has \(data.count) elements, expected \(rows) x \(cols) = \(rows * cols)")
        self.rows = rows
        self.cols = cols
        self.data = data
    }

    /// Element (r, c), bounds-checked. For single elements only; loops should use `data`.
    public subscript(r: Int, c: Int) -> Float {
        get {
            precondition(r >= 0 && r < rows && c >= 0 && c < cols, "Matrix index (\(r), \(c)) out of \(rows) x \(cols)")
            return data[r * cols + c]
        }
        set {
            precondition(r >= 0 && r < rows && c >= 0 && c < cols, "Matrix index (\(r), \(c)) out of \(rows) x \(cols)")
            data[r * cols + c] = newValue
        }
    }

    /// The rows `range` as a new `range.count x cols` matrix.
    public func rows(in range: Range<Int>) -> Matrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "Row range \(range) out of 0..<\(rows)")
        return Matrix(rows: range.count, cols: cols,
                      data: Array(data[(range.lowerBound * cols)..<(range.upperBound * cols)]))
    }

    /// Stacks matrices with the same column count on top of each other, in order.
    public static func stacking(_ parts: [Matrix]) -> Matrix {
        guard let first = parts.first else { return Matrix(rows: 0, cols: 0) }
        precondition(parts.allSatisfy { $0.cols == first.cols }, "Stacked matrices must have the same column count")
        var data: [Float] = []
        data.reserveCapacity(parts.reduce(0) { $0 + $1.data.count })
        for part in parts { data.append(contentsOf: part.data) }
        return Matrix(rows: parts.reduce(0) { $0 + $1.rows }, cols: first.cols, data: data)
    }
}
