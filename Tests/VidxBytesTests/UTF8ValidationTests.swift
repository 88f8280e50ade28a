import Foundation
import Testing
import VidxBytes
import VidxTestSupport

/// The reference: the standard library's decoder. The offset of the first byte of the first
/// ill-formed sequence (the bytes of the scalars decoded before it), or nil.
func referenceInvalidOffset(_ bytes: [UInt8]) -> Int? {
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    var consumed = 0
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue(let scalar): consumed += UTF8.width(scalar)
        case .emptyInput: return nil
        case .error: return consumed
        }
    }
}

func validated(_ bytes: [UInt8]) -> Int? { bytes.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) } }

@Suite("UTF-8 validation: table 3-7, agreeing with the standard library's decoder")
struct UTF8ValidationTests {
    @Test("the edge cases: overlongs, surrogates, beyond U+10FFFF, truncations, stray continuations")
    func edges() {
        let cases: [([UInt8], Int?)] = [
            ([], nil),
            (Array("plain ascii".utf8), nil),
            (Array("é中𝄞".utf8), nil),
            ([0x7F], nil), ([0xC2, 0x80], nil), ([0xDF, 0xBF], nil),                       // U+007F, U+0080, U+07FF
            ([0xE0, 0xA0, 0x80], nil), ([0xED, 0x9F, 0xBF], nil), ([0xEE, 0x80, 0x80], nil), // U+0800, U+D7FF, U+E000
            ([0xEF, 0xBF, 0xBF], nil), ([0xF0, 0x90, 0x80, 0x80], nil), ([0xF4, 0x8F, 0xBF, 0xBF], nil),
            ([0xC0, 0x80], 0), ([0xC1, 0xBF], 0),                                             // overlong 2-byte
            ([0xE0, 0x9F, 0xBF], 0), ([0xF0, 0x8F, 0xBF, 0xBF], 0),                           // overlong 3-, 4-byte
            ([0xED, 0xA0, 0x80], 0), ([0xED, 0xBF, 0xBF], 0),                                 // surrogates
            ([0xF4, 0x90, 0x80, 0x80], 0), ([0xF5, 0x80, 0x80, 0x80], 0), ([0xFF], 0), ([0xFE], 0),
            ([0x80], 0), ([0x41, 0xBF], 1),                                                   // stray continuation
            ([0xC2], 0), ([0x41, 0xE0, 0xA0], 1), ([0xF0, 0x90, 0x80], 0),                    // truncated at the end
            ([0xC2, 0x41], 0), ([0xE1, 0x80, 0x41], 0), ([0xF1, 0x80, 0x80, 0x41], 0),         // continuation missing
            (Array("é".utf8) + [0xFF], 2),
        ]
        for (bytes, expected) in cases {
            #expect(validated(bytes) == expected, "\(bytes.map { String($0, radix: 16) })")
            #expect(referenceInvalidOffset(bytes) == expected, "reference disagrees on \(bytes)")
        }
    }

    @Test("every 1- and 2-byte sequence, and every 3-byte one, agrees with the reference")
    func exhaustiveShort() {
        for a in 0...255 {
            #expect(validated([UInt8(a)]) == referenceInvalidOffset([UInt8(a)]))
            for b in 0...255 {
                let two = [UInt8(a), UInt8(b)]
                #expect(validated(two) == referenceInvalidOffset(two), "\(two)")
            }
        }
        var disagreements = 0
        for a in 0xE0...0xEF {
            for b in 0...255 {
                for c in stride(from: 0, through: 255, by: 1) {
                    let three = [UInt8(a), UInt8(b), UInt8(c)]
                    if validated(three) != referenceInvalidOffset(three) { disagreements += 1 }
                }
            }
        }
        #expect(disagreements == 0)
    }

    @Test("seeded random buffers: ASCII runs of every length around the 8-byte fast path, then any bytes")
    func randomBuffers() {
        var rng = SeededGenerator(seed: 11)
        let pieces: [[UInt8]] = [Array("é".utf8), Array("中".utf8), Array("𝄞".utf8), [0xF4, 0x8F, 0xBF, 0xBF],
                                 [0xED, 0xA0, 0x80], [0xC0, 0xAF], [0x80], [0xF0, 0x90], [0xFF]]
        for _ in 0..<20_000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes += (0..<Int.random(in: 0...19, using: &rng)).map { _ in UInt8.random(in: 0x20...0x7E, using: &rng) }
                if Bool.random(using: &rng) { bytes += pieces[Int.random(in: 0..<pieces.count, using: &rng)] }
                if Int.random(in: 0..<8, using: &rng) == 0 { bytes.append(UInt8.random(in: 0...255, using: &rng)) }
            }
            #expect(validated(bytes) == referenceInvalidOffset(bytes), "\(bytes)")
        }
    }

    @Test("an invalid byte at every position of a long ASCII run is found there")
    func positionInASCIIRun() {
        for n in 0..<40 {
            for at in 0..<n {
                var bytes = [UInt8](repeating: 0x61, count: n)
                bytes[at] = 0xFF
                #expect(validated(bytes) == at)
                #expect(bytes.withUnsafeBytes { UTF8Validation.isASCII($0) } == false)
            }
            #expect([UInt8](repeating: 0x61, count: n).withUnsafeBytes { UTF8Validation.isASCII($0) })
        }
    }

    @Test("string(_:) decodes valid bytes and refuses invalid ones (no replacement characters)")
    func string() {
        #expect(Array("vidéo".utf8).withUnsafeBytes { UTF8Validation.string($0) } == "vidéo")
        #expect([0x61, 0xFF].withUnsafeBytes { UTF8Validation.string($0) } == nil)
        #expect([UInt8]().withUnsafeBytes { UTF8Validation.string($0) } == "")
    }
}
