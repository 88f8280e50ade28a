/// UTF-8 validation of untrusted bytes, by the well-formed sequences of the Unicode
/// Standard's table 3-7: no overlong forms, no surrogates (U+D800..DFFF), nothing above
/// U+10FFFF, no truncated sequence. ASCII runs are checked 8 bytes a step.
public enum UTF8Validation {
    /// The offset of the first byte of the first ill-formed sequence, or nil when all of
    /// `bytes` is well-formed UTF-8 (an empty buffer is).
    public static func firstInvalidOffset(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let n = bytes.count
        var i = 0
        while i < n {
            // ASCII fast path: a word at a time while no byte has its top bit set.
            while i &+ 8 <= n, bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                i &+= 8
            }
            guard i < n else { break }
            let lead = bytes[i]
            if lead < 0x80 {
                i &+= 1
                continue
            }
            // The sequence's length and the allowed range of its second byte.
            let length: Int, low: UInt8, high: UInt8
            switch lead {
            case 0xC2...0xDF: (length, low, high) = (2, 0x80, 0xBF)
            case 0xE0: (length, low, high) = (3, 0xA0, 0xBF)
            case 0xE1...0xEC, 0xEE...0xEF: (length, low, high) = (3, 0x80, 0xBF)
            case 0xED: (length, low, high) = (3, 0x80, 0x9F)
            case 0xF0: (length, low, high) = (4, 0x90, 0xBF)
            case 0xF1...0xF3: (length, low, high) = (4, 0x80, 0xBF)
            case 0xF4: (length, low, high) = (4, 0x80, 0x8F)
            default: return i   // 0x80...0xC1 (continuation or overlong lead), 0xF5...0xFF
            }
            guard n &- i >= length else { return i }
            let second = bytes[i &+ 1]
            guard second >= low && second <= high else { return i }
            for k in 2..<length where bytes[i &+ k] & 0xC0 != 0x80 { return i }
            i &+= length
        }
        return nil
    }

    /// Whether every byte is below 0x80 (then every split of the buffer is a character
    /// boundary). Reads 8 bytes a step and decides once, so the loop vectorises.
    public static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        var any: UInt64 = 0
        while i &+ 8 <= bytes.count {
            any |= bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i &+= 8
        }
        while i < bytes.count {
            any |= UInt64(bytes[i])
            i &+= 1
        }
        return any & 0x8080_8080_8080_8080 == 0
    }

    /// The bytes as a `String` if they are well-formed UTF-8, else nil.
    public static func string(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard firstInvalidOffset(bytes) == nil else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
