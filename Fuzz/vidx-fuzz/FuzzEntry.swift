// The libFuzzer entry points, compiled only in the fuzz build (`make fuzz`: -DFUZZING
// -parse-as-library -sanitize=fuzzer,address -enable-experimental-feature Extern).
#if FUZZING
import Foundation

/// libFuzzer's driver, for a program with its own `main` (declared in libFuzzer's
/// FuzzerInterface.h; there is no Swift module for it, hence `@_extern(c)`).
@_extern(c, "LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// The program's entry point in the fuzz build. SwiftPM links every executable with
/// `--defsym main=vidx_fuzz_main` (so that test targets can link the module), which hides
/// libFuzzer's own `main`; this one hands the command line to libFuzzer's driver instead.
@_cdecl("vidx_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc, argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) }
}

/// The reader under fuzzing, from `VIDX_FUZZ_TARGET`; read once.
private let selected: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["VIDX_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: " | ")
        FileHandle.standardError.write(Data("vidx-fuzz: set VIDX_FUZZ_TARGET to one of \(names) (it is '\(name)')\n".utf8))
        exit(2)
    }
    return target
}()

/// Checks `VIDX_FUZZ_TARGET` before the first input.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    FileHandle.standardError.write(Data("vidx-fuzz: fuzzing the \(selected.rawValue) reader\n".utf8))
    return 0
}

/// One input through the selected reader; a reader bug stops the process.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    _ = selected.run(UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size))
    return 0
}
#endif
