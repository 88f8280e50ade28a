import Testing
import VidxCore
@testable import VidxDecode

@Suite("Sampling policies and frame selection")
struct SamplingPolicyTests {
    @Test("parses every policy and prints it back")
    func parsing() throws {
        #expect(try SamplingPolicy(parsing: "fps:2") == .fps(2))
        #expect(try SamplingPolicy(parsing: "fps:0.5") == .fps(0.5))
        #expect(try SamplingPolicy(parsing: "uniform:8") == .uniform(8))
        #expect(try SamplingPolicy(parsing: "keyframes") == .keyframes)
        #expect(try SamplingPolicy(parsing: "every:1.5") == .every(1.5))
        for text in ["fps:2", "fps:0.5", "uniform:8", "keyframes", "every:1.5"] {
            #expect(try SamplingPolicy(parsing: text).description == text)
        }
    }

    @Test("rejects malformed policies with a reason", arguments: [
        "fps", "fps:0", "fps:-1", "fps:abc", "uniform:2.5", "uniform:0", "every:", "keyframes:3", "frames:2", "", "fps:nan", "fps:inf",
    ])
    func rejects(_ text: String) {
        #expect(throws: SamplingPolicyError.self) { try SamplingPolicy(parsing: text) }
    }

    @Test("target times follow the documented definitions")
    func targets() {
        func take(_ p: SamplingPolicy, _ d: Double?, _ n: Int = 100) -> [Double] {
            var seq = p.targets(duration: d)
            var out: [Double] = []
            while out.count < n, let t = seq.next() { out.append(t) }
            return out
        }
        #expect(take(.fps(2), 3) == [0, 0.5, 1, 1.5, 2, 2.5])
        #expect(take(.fps(1), 3.0000001) == [0, 1, 2, 3])
        #expect(take(.uniform(4), 2) == [0.25, 0.75, 1.25, 1.75])
        #expect(take(.uniform(4), nil) == [])
        #expect(take(.every(2), 5) == [1, 3, 4.5])
        #expect(take(.every(2), 4) == [1, 3])
        #expect(take(.fps(1), nil, 5) == [0, 1, 2, 3, 4])
        #expect(take(.keyframes, 10) == [])
    }

    @Test("firstTarget(atOrAfter:) agrees with the target sequence", arguments: [
        SamplingPolicy.fps(3), .fps(0.7), .uniform(7), .every(1.3), .every(0.25),
    ])
    func firstTargetConsistency(_ policy: SamplingPolicy) {
        let duration = 9.37
        var seq = policy.targets(duration: duration)
        var all: [Double] = []
        while let t = seq.next() { all.append(t) }
        var rng = SystemRandomNumberGenerator()
        var probes = (0..<500).map { _ in Double.random(in: 0...10, using: &rng) }
        probes += all + all.map { $0 + 1e-9 } + all.map { $0 - 1e-3 }
        for time in probes {
            let expected = all.first { $0 + SamplingPolicy.epsilon >= time }
            #expect(policy.firstTarget(atOrAfter: time, duration: duration) == expected, "time \(time)")
        }
    }

    /// Runs the selector over frame times as the decoder does and returns the sampled
    /// times with their targets.
    func select(_ policy: SamplingPolicy, frames: [Double], duration: Double?, frameDuration: Double)
        -> [(time: Double, target: Double)] {
        var s = FrameSelector(policy: policy, duration: duration)
        var out: [(Double, Double)] = []
        var pending: Double?
        for t in frames {
            let d = s.offer(time: t)
            if d.ignored { continue }
            if let target = d.emitPending { out.append((pending!, target)) }
            if let target = d.emitOffered { out.append((t, target)) }
            pending = d.keepOffered ? t : nil
        }
        if let target = s.finish(endTime: frames.last.map { $0 + frameDuration }), let p = pending {
            out.append((p, target))
        }
        return out
    }

    @Test("samples the frame on screen at each target time")
    func onScreenFrame() {
        let frames = (0..<50).map { Double($0) / 25 }   // 2 s at 25 fps
        let r = select(.fps(1), frames: frames, duration: 2, frameDuration: 0.04)
        #expect(r.map(\.time) == [0, 1])
        #expect(r.map(\.target) == [0, 1])
        // Targets between frames take the earlier frame.
        let u = select(.uniform(3), frames: frames, duration: 2, frameDuration: 0.04)
        #expect(ms(u.map(\.time)) == [0.32, 1.0, 1.64])
    }

    @Test("a target before the first frame takes the first frame")
    func targetBeforeFirstFrame() {
        let frames = [0.1, 0.2, 0.3]
        let r = select(.fps(10), frames: frames, duration: 0.4, frameDuration: 0.1)
        #expect(ms(r.map(\.time)) == [0.1, 0.2, 0.3])
        #expect(ms(r.map(\.target)) == [0, 0.2, 0.3])
    }

    @Test("variable frame rate: each frame at most once, the one on screen")
    func variableFrameRate() {
        // 10 fps for 1 s, then one frame every 0.5 s up to 3 s.
        let frames = (0..<10).map { Double($0) / 10 } + [1.0, 1.5, 2.0, 2.5]
        let r = select(.fps(4), frames: frames, duration: 3, frameDuration: 0.5)
        #expect(ms(r.map(\.time)) == [0, 0.2, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5])
    }

    @Test("frames whose time does not increase are ignored")
    func nonIncreasing() {
        let r = select(.fps(10), frames: [0, 0.1, 0.1, 0.05, 0.2], duration: 0.3, frameDuration: 0.1)
        #expect(ms(r.map(\.time)) == [0, 0.1, 0.2])
    }

    @Test("targets past the last frame's end are not served")
    func pastTheEnd() {
        // Duration says 10 s but frames stop at 2 s (a cut-short stream).
        let frames = (0..<20).map { Double($0) / 10 }
        let r = select(.fps(1), frames: frames, duration: 10, frameDuration: 0.1)
        #expect(ms(r.map(\.time)) == [0, 1])
    }

    @Test("crop, pad and stretch geometry, with rotation and sample aspect ratio")
    func geometry() {
        // 320x240 into 224x224.
        let crop = FrameConverter.geometry(width: 320, height: 240, sar: 1, rotation: 0, outWidth: 224, outHeight: 224, fit: .crop)
        #expect(crop == .init(cropLeft: 40, cropTop: 0, cropWidth: 240, cropHeight: 240,
                              contentWidth: 224, contentHeight: 224, offsetX: 0, offsetY: 0))
        let pad = FrameConverter.geometry(width: 320, height: 240, sar: 1, rotation: 0, outWidth: 224, outHeight: 224, fit: .pad)
        #expect(pad == .init(cropLeft: 0, cropTop: 0, cropWidth: 320, cropHeight: 240,
                             contentWidth: 224, contentHeight: 168, offsetX: 0, offsetY: 28))
        let stretch = FrameConverter.geometry(width: 320, height: 240, sar: 1, rotation: 0, outWidth: 100, outHeight: 50, fit: .stretch)
        #expect(stretch.cropWidth == 320 && stretch.cropHeight == 240 && stretch.contentWidth == 100 && stretch.contentHeight == 50)
        // Shown sideways the picture is 240 wide, 320 tall: crop takes rows, not columns.
        let rot = FrameConverter.geometry(width: 320, height: 240, sar: 1, rotation: 90, outWidth: 224, outHeight: 224, fit: .crop)
        #expect(rot.cropWidth == 240 && rot.cropHeight == 240 && rot.cropLeft == 40)
        let rotPad = FrameConverter.geometry(width: 320, height: 240, sar: 1, rotation: 90, outWidth: 224, outHeight: 224, fit: .pad)
        #expect(rotPad.contentWidth == 168 && rotPad.contentHeight == 224 && rotPad.offsetX == 28)
        // Anamorphic 720x576 with SAR 16:11 is shown 1047x576: crop keeps 576 of 1047 columns' worth.
        let ana = FrameConverter.geometry(width: 720, height: 576, sar: 16.0 / 11, rotation: 0, outWidth: 224, outHeight: 224, fit: .crop)
        #expect(ana.cropHeight == 576 && abs(ana.cropWidth - 396) <= 1)
        // Crop offsets stay on the chroma grid.
        let odd = FrameConverter.geometry(width: 333, height: 100, sar: 1, rotation: 0, outWidth: 10, outHeight: 10, fit: .crop)
        #expect(odd.cropLeft % 2 == 0)
    }

    @Test("rotation places pixels where a viewer sees them")
    func rotationPlacement() {
        // 2x1 image: left red, right blue.
        let src: [UInt8] = [255, 0, 0, 0, 0, 255]
        var out = [UInt8](repeating: 0, count: 6)
        FrameConverter.place(src, width: 2, height: 1, rotation: 90, into: &out, outWidth: 1, offsetX: 0, offsetY: 0)
        #expect(out == [255, 0, 0, 0, 0, 255])   // clockwise: left goes to top
        FrameConverter.place(src, width: 2, height: 1, rotation: 270, into: &out, outWidth: 1, offsetX: 0, offsetY: 0)
        #expect(out == [0, 0, 255, 255, 0, 0])   // counter-clockwise: right goes to top
        FrameConverter.place(src, width: 2, height: 1, rotation: 180, into: &out, outWidth: 2, offsetX: 0, offsetY: 0)
        #expect(out == [0, 0, 255, 255, 0, 0])
    }

    @Test("presentation order counts earlier timestamps, whatever the arrival order")
    func presentationOrder() {
        var p = PresentationOrder()
        for ts: Int64 in [0, 3, 1, 2, 6, 4, 5, 3] { p.insert(ts) }
        #expect(p.index(of: 0) == 0)
        #expect(p.index(of: 3) == 3)
        #expect(p.index(of: 6) == 6)
        #expect(p.index(of: 7) == nil)
    }
}
