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

/// The best `k` hits seen so far: a binary heap with the worst kept hit at the root.
public struct TopK: Sendable {
    public let k: Int
    private var heap: [SearchHit] = []

    public init(k: Int) {
        precondition(k >= 1, "k must be at least 1")
        self.k = k
        heap.reserveCapacity(min(k, 1 << 16))
    }

    /// The score a new hit must beat (or tie with a lower id) to enter; -infinity until full.
    @inline(__always)
    public var threshold: Float { heap.count < k ? -.infinity : heap[0].score }

    @inline(__always)
    public mutating func offer(_ hit: SearchHit) {
        if heap.count < k {
            heap.append(hit)
            siftUp(heap.count - 1)
        } else if hit.ranksAbove(heap[0]) {
            heap[0] = hit
            siftDown(0)
        }
    }

    public mutating func merge(_ other: TopK) {
        for h in other.heap { offer(h) }
    }

    /// The kept hits, best first.
    public func sorted() -> [SearchHit] {
        heap.sorted { $0.ranksAbove($1) }
    }

    private mutating func siftUp(_ i: Int) {
        var i = i
        while i > 0 {
            let p = (i - 1) / 2
            guard heap[p].ranksAbove(heap[i]) else { break }  // the root holds the worst
            heap.swapAt(p, i)
            i = p
        }
    }

    private mutating func siftDown(_ i: Int) {
        var i = i
        let n = heap.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var worst = i
            if l < n && heap[worst].ranksAbove(heap[l]) { worst = l }
            if r < n && heap[worst].ranksAbove(heap[r]) { worst = r }
            if worst == i { return }
            heap.swapAt(i, worst)
            i = worst
        }
    }
}
