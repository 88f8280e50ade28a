/// A scored entry of an index: which shard and row, its stable id, its score.
public struct SearchHit: Sendable, Equatable {
    public var score: Float
    public var id: UInt64
    public var shard: Int32
    public var row: Int32

    public init(score: Float, id: UInt64, shard: Int, row: Int) {
        self.score = score
        self.id = id
        self.shard = Int32(shard)
        self.row = Int32(row)
    }

    /// The ranking order: higher score first, then lower id. A total order on distinct ids,
    /// so a top-k does not depend on the order entries were scanned in (or on threads).
    @inline(__always)
    public func ranksAbove(_ other: SearchHit) -> Bool {
        score > other.score || (score == other.score && id < other.id)
    }
}

/// The best `k` hits seen so far.
///
/// Hits that could still make the top k are appended to a buffer; when it holds 2k, a
/// selection (quickselect under the total order) keeps the best k and raises the bar to
/// the k-th of them. Amortised O(1) an offer, against a heap's O(log k) with its
/// scattered swaps, which dominated coarse-to-fine (k = 1000) runs. The kept set, and so
/// `sorted()`, is the same for any offer order: the best k under a total order.
public struct TopK: Sendable {
    public let k: Int
    private var items: [SearchHit] = []
    /// The k-th best hit at the last selection: a new hit must rank above it.
    private var bar: SearchHit?

    public init(k: Int) {
        precondition(k >= 1, "k must be at least 1")
        self.k = k
        items.reserveCapacity(min(2 * k, 1 << 16))
    }

    /// A score below this cannot enter (an equal one may, with a lower id); -infinity
    /// until the first selection.
    @inline(__always)
    public var threshold: Float { bar?.score ?? -.infinity }

    @inline(__always)
    public mutating func offer(_ hit: SearchHit) {
        if let bar, !hit.ranksAbove(bar) { return }
        items.append(hit)
        if items.count >= 2 * k { keepBest() }
    }

    public mutating func merge(_ other: TopK) {
        for h in other.items { offer(h) }
    }

    /// The kept hits, best first.
    public func sorted() -> [SearchHit] {
        Array(items.sorted { $0.ranksAbove($1) }.prefix(k))
    }

    /// Reorders `items` so that the best k come first, drops the rest and sets the bar.
    private mutating func keepBest() {
        items.withUnsafeMutableBufferPointer { b in TopK.select(b, k - 1) }
        items.removeLast(items.count - k)
        bar = items[k - 1]
    }

    /// Quickselect (Hoare partition, median-of-three pivot): afterwards `b[n]` is the hit
    /// that ranks n-th (0-based) and every hit before it ranks above it.
    static func select(_ b: UnsafeMutableBufferPointer<SearchHit>, _ n: Int) {
        var lo = 0, hi = b.count - 1
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            if b[mid].ranksAbove(b[lo]) { b.swapAt(mid, lo) }
            if b[hi].ranksAbove(b[lo]) { b.swapAt(hi, lo) }
            if b[hi].ranksAbove(b[mid]) { b.swapAt(hi, mid) }
            let pivot = b[mid]  // the median of the three
            var i = lo, j = hi
            while i <= j {
                while b[i].ranksAbove(pivot) { i += 1 }
                while pivot.ranksAbove(b[j]) { j -= 1 }
                if i <= j { b.swapAt(i, j); i += 1; j -= 1 }
            }
            // Now b[lo...j] rank at or above the pivot, b[i...hi] at or below it.
            if n <= j { hi = j } else if n >= i { lo = i } else { return }
        }
    }
}
