/// CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and final XOR
/// 0xFFFFFFFF), as in iSCSI, ext4 and SSE4.2's `crc32`. `checksum("123456789") == 0xE3069283`.
///
/// Table-driven, slicing-by-8 (eight bytes per step, about 8 table reads each), in plain
/// Swift so the shard reader needs no C. `combine` joins the CRCs of adjacent buffers
/// without reading them again, which lets the reader derive the file CRC from the section
/// CRCs it has just checked.
public enum CRC32C {
    /// The reflected polynomial.
    public static let polynomial: UInt32 = 0x82F6_3B78

    /// CRC-32C of `bytes`, continuing from `crc`, the CRC of the bytes before them (0 for
    /// none): `checksum(b, continuing: checksum(a)) == checksum(a + b)`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return crc }
        var n = bytes.count
        var c = ~crc
        tables.withUnsafeBufferPointer { tableBuffer in
            // Non-empty (2048 entries), so the base address exists.
            guard let t = tableBuffer.baseAddress else { return }
            // Byte at a time up to an 8-byte boundary, so the word loads are aligned.
            while n > 0 && UInt(bitPattern: p) & 7 != 0 {
                c = t[Int((c ^ UInt32(p.load(as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                p += 1
                n -= 1
            }
            while n >= 8 {
                let w = UInt64(littleEndian: p.load(as: UInt64.self)) ^ UInt64(c)
                c = t[7 * 256 + Int(w & 0xFF)] ^ t[6 * 256 + Int((w >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((w >> 16) & 0xFF)] ^ t[4 * 256 + Int((w >> 24) & 0xFF)]
                    ^ t[3 * 256 + Int((w >> 32) & 0xFF)] ^ t[2 * 256 + Int((w >> 40) & 0xFF)]
                    ^ t[1 * 256 + Int((w >> 48) & 0xFF)] ^ t[Int(w >> 56)]
                p += 8
                n -= 8
            }
            while n > 0 {
                c = t[Int((c ^ UInt32(p.load(as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                p += 1
                n -= 1
            }
        }
        return ~c
    }

    /// CRC-32C of `bytes`, continuing from `crc`. See `checksum(_:continuing:)`.
    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The CRC of `a + b` from `crcA = checksum(a)`, `crcB = checksum(b)` and `b.count`,
    /// in O(log(lengthB)) steps, without the bytes (zlib's `crc32_combine`).
    public static func combine(_ crcA: UInt32, _ crcB: UInt32, lengthB: UInt64) -> UInt32 {
        multiplyModP(xPower8n(lengthB), crcA) ^ crcB
    }

    // MARK: Tables

    /// `tables[j * 256 + b]`: the register contribution of byte `b` followed by `j` zero bytes.
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for b in 0..<256 {
            var c = UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ polynomial : c >> 1 }
            t[b] = c
        }
        for j in 1..<8 {
            for b in 0..<256 {
                let prev = t[(j - 1) * 256 + b]
                t[j * 256 + b] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }()

    // MARK: Combining (polynomials over GF(2), reflected: bit 31 is x^0)

    /// a(x) b(x) modulo the polynomial.
    private static func multiplyModP(_ a: UInt32, _ b: UInt32) -> UInt32 {
        var a = a, b = b, product: UInt32 = 0
        var m: UInt32 = 1 << 31
        while m != 0 {
            if a & m != 0 {
                product ^= b
                a ^= m
                if a == 0 { break }
            }
            m >>= 1
            b = b & 1 != 0 ? (b >> 1) ^ polynomial : b >> 1
        }
        return product
    }

    /// `x2n[k]` = x^(2^k) modulo the polynomial, for k < 3 + 64 (`xPower8n`'s largest).
    private static let x2n: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 67)
        var p: UInt32 = 1 << 30  // x^1
        table[0] = p
        for k in 1..<67 {
            p = multiplyModP(p, p)
            table[k] = p
        }
        return table
    }()

    /// x^(8 n) modulo the polynomial: the operator "append n zero bytes".
    private static func xPower8n(_ n: UInt64) -> UInt32 {
        var p: UInt32 = 1 << 31  // x^0
        var n = n
        var k = 3  // x^(8n) = x^(n * 2^3)
        while n != 0 {
            if n & 1 != 0 { p = multiplyModP(x2n[k], p) }
            n >>= 1
            k += 1
        }
        return p
    }
}
