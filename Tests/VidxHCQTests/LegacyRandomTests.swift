import Foundation
import Testing
import VidxTestSupport
@testable import VidxHCQ

@Suite("NumPy's legacy RandomState, bit-exact")
struct LegacyRandomTests {
    @Test("MT19937 raw outputs equal NumPy's (values NumPy printed)")
    func rawOutputs() {
        var zero = MersenneTwister(seed: 0)
        #expect((0..<5).map { _ in zero.next() } == [2357136044, 2546248239, 3071714933, 3626093760, 2588848963])
        var other = MersenneTwister(seed: 12345)
        #expect((0..<3).map { _ in other.next() } == [3992670690, 3823185381, 1358822685])
    }

    @Test("choice(n, T, replace=False), sorted, equals NumPy's (values NumPy printed)")
    func printedChoices() {
        #expect(LegacyRandom.sortedChoice(n: 9, size: 6) == [1, 2, 4, 6, 7, 8])
        #expect(LegacyRandom.sortedChoice(n: 31, size: 30) == Array(0...11) + Array(13...30))
        #expect(LegacyRandom.sortedChoice(n: 100, size: 30) == [2, 3, 6, 7, 8, 13, 16, 22, 24, 26, 30, 33, 43, 45, 48,
                                                                 53, 54, 55, 62, 71, 73, 75, 76, 78, 82, 86, 92, 93, 95, 99])
        #expect(LegacyRandom.sortedChoice(n: 1000, size: 100).prefix(8) == [1, 14, 27, 31, 45, 55, 77, 103])
    }

    @Test("choice agrees with NumPy run live for many (n, T)")
    func liveNumPy() throws {
        let cases = [(1, 1), (2, 1), (6, 6), (7, 6), (30, 30), (31, 30), (45, 30), (64, 30), (257, 30), (1000, 100), (5000, 30), (70_000, 100)]
        let arg = "[" + cases.map { "[\($0.0),\($0.1)]" }.joined(separator: ",") + "]"
        let out = try Python.call("legacy_choices", arg)
        let expected = try JSONDecoder().decode([[Int]].self, from: Data(out.utf8))
        for (i, c) in cases.enumerated() {
            #expect(LegacyRandom.sortedChoice(n: c.0, size: c.1) == expected[i], "n \(c.0) T \(c.1)")
        }
    }
}
