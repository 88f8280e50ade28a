/// NumPy's legacy random generator (`numpy.random.RandomState`), bit-exact for what HCQ
/// uses: the 32-bit Mersenne Twister seeded with an integer, and
/// `choice(n, size, replace=False)`, which is the first `size` entries of a permutation
/// made by NumPy's legacy Fisher-Yates shuffle with masked rejection sampling.
///
/// HCQ picks the temporal tokens of an expert with more than T rows as
/// `sorted(RandomState(0).choice(n, T, replace=False))`; the indices therefore depend on
/// n and T only, and this type reproduces them exactly.
struct MersenneTwister {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624

    /// `init_genrand`: what `RandomState(seed)` does for an integer seed.
    init(seed: UInt32) {
        state[0] = seed
        for i in 1..<624 {
            state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i)
        }
    }

    /// `genrand_int32`.
    mutating func next() -> UInt32 {
        if index >= 624 {
            for k in 0..<624 {
                let y = (state[k] & 0x8000_0000) | (state[(k + 1) % 624] & 0x7fff_ffff)
                state[k] = state[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1) != 0 ? 0x9908_b0df : 0)
            }
            index = 0
        }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// NumPy's legacy `random_interval(max)`: uniform in 0...max by masking to the
    /// smallest all-ones bit pattern covering max and rejecting values above it.
    mutating func interval(_ max: UInt32) -> UInt32 {
        if max == 0 { return 0 }
        var mask = max
        mask |= mask >> 1
        mask |= mask >> 2
        mask |= mask >> 4
        mask |= mask >> 8
        mask |= mask >> 16
        while true {
            let v = next() & mask
            if v <= max { return v }
        }
    }
}

enum LegacyRandom {
    /// `sorted(numpy.random.RandomState(seed).choice(n, size, replace=False))`.
    /// - Precondition: size <= n < 2^32.
    static func sortedChoice(n: Int, size: Int, seed: UInt32 = 0) -> [Int] {
        precondition(size <= n && n < Int(UInt32.max), "sortedChoice: need size <= n < 2^32")
        var rng = MersenneTwister(seed: seed)
        var perm = Array(0..<n)
        // permutation(n) = shuffle(arange(n)): for i from n-1 down to 1, swap with interval(i).
        var i = n - 1
        while i > 0 {
            let j = Int(rng.interval(UInt32(i)))
            perm.swapAt(i, j)
            i -= 1
        }
        return Array(perm[0..<size]).sorted()
    }
}
