import Foundation
import VidxTestSupport
import Testing
import VidxCore

@Suite("SHA-256 digests")
struct HashingTests {
    let dir = TensorTestSupport.makeDirectory("hashing")

    @Test("known test vectors (FIPS 180-2)", arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func vectors(_ input: String, _ expected: String) throws {
        let bytes = Array(input.utf8)
        #expect(SHA256Digest.hex(bytes) == expected)
        #expect(bytes.withUnsafeBytes { SHA256Digest.hex($0) } == expected)
        #expect(SHA256Digest.raw(bytes).count == 32)
        #expect(SHA256Digest.hexString(SHA256Digest.raw(bytes)) == expected)
        let path = dir + "/vector-\(input.count)"
        try TensorTestSupport.write(bytes, to: path)
        #expect(try SHA256Digest.hex(fileAt: path) == expected)
    }

    @Test("streaming a file equals hashing its bytes, across chunk boundaries", arguments: [3 << 20, (3 << 20) + 12_345])
    func file(_ size: Int) throws {
        var rng = SeededGenerator(seed: UInt64(size))
        var bytes = [UInt8](repeating: 0, count: size)
        for i in stride(from: 0, to: size, by: 8) {
            withUnsafeBytes(of: rng.next()) { word in
                for j in 0..<min(8, size - i) { bytes[i + j] = word[j] }
            }
        }
        let path = dir + "/blob-\(size)"
        try TensorTestSupport.write(bytes, to: path)
        let expected = SHA256Digest.hex(bytes)
        #expect(try SHA256Digest.hex(fileAt: path) == expected)
        #expect(try SHA256Digest.raw(fileAt: path) == SHA256Digest.raw(bytes))
        // An independent implementation agrees.
        let python = try TensorTestSupport.python(
            "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())", [path])
        #expect(python.trimmingCharacters(in: .whitespacesAndNewlines) == expected)
    }

    @Test("hex digits decode back to the bytes; odd lengths and non-digits are refused")
    func hexRoundTrip() {
        let bytes: [UInt8] = [0x00, 0x01, 0x7f, 0x80, 0xab, 0xff]
        #expect(SHA256Digest.bytes(fromHex: SHA256Digest.hexString(bytes)) == bytes)
        #expect(SHA256Digest.bytes(fromHex: "ABff") == [0xab, 0xff])
        #expect(SHA256Digest.bytes(fromHex: "") == [])
        #expect(SHA256Digest.bytes(fromHex: "abc") == nil)
        #expect(SHA256Digest.bytes(fromHex: "0g") == nil)
        #expect(SHA256Digest.bytes(fromHex: "é1") == nil)
    }

    @Test("a file that cannot be read gives a FileReadError naming the path and the call")
    func unreadable() throws {
        let missing = dir + "/missing"
        let e = #expect(throws: FileReadError.self) { try SHA256Digest.hex(fileAt: missing) }
        #expect(e?.path == missing && e?.operation == "open" && e?.errno == ENOENT)
        #expect(e?.description.contains(missing) == true)
        let d = #expect(throws: FileReadError.self) { try SHA256Digest.raw(fileAt: dir) }   // a directory
        #expect(d?.path == dir && d?.description.contains(dir) == true)
    }
}
