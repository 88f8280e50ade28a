"""What the benchmark scripts share: a cached generated clip, timed child runs, the CPU's name."""
import os
import platform
import subprocess
import sys
import time


def make_clip(workdir, name, clip_args, label):
    """Returns workdir/name, generating it with `ffmpeg clip_args` when missing or made with
    other arguments (recorded in name + ".args")."""
    os.makedirs(workdir, exist_ok=True)
    clip = os.path.join(workdir, name)
    stamp = clip + ".args"
    wanted = " ".join(clip_args)
    if not (os.path.exists(clip) and os.path.exists(stamp) and open(stamp).read() == wanted):
        print(f"generating {clip} ({label}, about a minute)...", flush=True)
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + clip_args + [clip],
                       check=True)
        with open(stamp, "w") as f:
            f.write(wanted)
    return clip


def sha256_file(path):
    """The SHA-256 of a file, read in 1 MiB blocks."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_once(cmd, tool, what, env=None):
    """Runs cmd with its output discarded; returns (seconds, the child's peak RSS in MiB).
    Exits naming `tool` and `what` when the command fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if code != 0:
        sys.exit(f"{tool}: {what} failed with status {code}: {' '.join(cmd)}\n{err}")
    return elapsed, usage.ru_maxrss / 1024.0


def pip_import(module, package, tool):
    """`module`, installed with pip (`package`) when missing, as `make setup` installs pip
    packages; exits naming `tool` when pip fails."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    print(f"{tool}: pip install {package}", flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", package]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "externally-managed-environment" in proc.stderr + proc.stdout:
        proc = subprocess.run(cmd + ["--break-system-packages"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{tool}: pip install {package} failed:\n{proc.stderr}")
    importlib.invalidate_caches()
    return importlib.import_module(module)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
