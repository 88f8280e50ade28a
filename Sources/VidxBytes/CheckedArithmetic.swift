/// Size arithmetic that cannot wrap: a result, or nil when it does not fit the type.
///
/// Readers compute lengths from counts they read from files (`8 x N`, `N x M x L`,
/// `product(shape) x element size`); any of them may be corrupt, so every product and
/// sum goes through here and an overflow becomes a refusal, never a wrapped length.
public enum Checked {
    /// `a + b`, or nil on overflow.
    @inlinable
    public static func add<T: FixedWidthInteger>(_ a: T, _ b: T) -> T? {
        let (r, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : r
    }

    /// `a - b`, or nil on overflow (for unsigned types: when `b > a`).
    @inlinable
    public static func subtract<T: FixedWidthInteger>(_ a: T, _ b: T) -> T? {
        let (r, overflow) = a.subtractingReportingOverflow(b)
        return overflow ? nil : r
    }

    /// `a x b`, or nil on overflow.
    @inlinable
    public static func multiply<T: FixedWidthInteger>(_ a: T, _ b: T) -> T? {
        let (r, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : r
    }

    /// The sum of `terms` (0 for none), or nil when it does not fit.
    @inlinable
    public static func sum<T: FixedWidthInteger>(_ terms: [T]) -> T? {
        var s: T = 0
        for t in terms {
            guard let r = add(s, t) else { return nil }
            s = r
        }
        return s
    }

    /// The exact product of `factors` (1 for none), or nil when it does not fit. A zero
    /// factor makes it 0 whatever the others are: the product is then exactly 0.
    @inlinable
    public static func product<T: FixedWidthInteger>(_ factors: [T]) -> T? {
        if factors.contains(0) { return 0 }
        var p: T = 1
        for f in factors {
            guard let r = multiply(p, f) else { return nil }
            p = r
        }
        return p
    }

    /// The bytes of an array of `shape` with `elementSize`-byte elements: the exact
    /// product of the dims and the size (0 if any dim is 0), or nil when a dim is
    /// negative or the product does not fit an `Int`.
    @inlinable
    public static func byteCount(shape: [Int], elementSize: Int) -> Int? {
        guard elementSize >= 0, shape.allSatisfy({ $0 >= 0 }) else { return nil }
        return product(shape + [elementSize])
    }
}
