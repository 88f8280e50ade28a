"""Test data and checks the Swift tests need from Python (NumPy, jsonschema), as functions.

Called from the tests through `Python.call(FUNCTION, ARGS...)` (Tests/VidxTestSupport),
which runs `python3 Tests/Reference/test_data.py FUNCTION ARGS...`: every argument is a
string; whatever a function returns is printed (JSON for lists and dicts). A function
that raises exits non-zero, and the test sees its message.
"""
import copy
import json
import os
import sys

import numpy as np

import bundle_tools
import safetensors_np

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Schemas")


# --- Queries and features -------------------------------------------------------------

def random_queries(path, count, levels, dimension, seed):
    """(count, levels, dimension) float32 standard normal queries, seeded, as .npy."""
    q = np.random.default_rng(int(seed)).standard_normal((int(count), int(levels), int(dimension)))
    np.save(path, q.astype(np.float32))


def query_files(npy, safetensors, wrong, seed="3"):
    """The same 2 x 4 x 64 queries as .npy and as safetensors (`queries`), and a .npy of
    the wrong width (32)."""
    q = np.random.default_rng(int(seed)).standard_normal((2, 4, 64)).astype(np.float32)
    np.save(npy, q)
    safetensors_np.save(safetensors, {"queries": q}, {})
    np.save(wrong, q[:, :, :32])


def random_features(path, rows, width, seed, times=None):
    """Seeded (rows, width) float32 features as .npy; with `times`, windows [k, k+1) too."""
    rows, width = int(rows), int(width)
    np.save(path, np.random.default_rng(int(seed)).standard_normal((rows, width)).astype(np.float32))
    if times:
        np.save(times, np.stack([np.arange(rows), np.arange(rows) + 1], 1).astype(np.float32))


def fixture_features(npz, out):
    """The authors' fixture features (features.npz) as a features file, every video ok,
    experts with 0 rows left out."""
    f = np.load(npz)
    tensors, videos = {}, []
    n = 1 + max(int(k.split("/")[0][1:]) for k in f.files)
    for i in range(n):
        videos.append({"id": f"video-{i}", "content_hash": "", "status": "ok", "error": None})
        for k in f.files:
            if k.startswith(f"v{i}/") and k.endswith("/features") and f[k].shape[0] > 0:
                e = k.split("/")[1]
                tensors[k] = f[k].astype(np.float32)
                tensors[f"v{i}/{e}/times"] = f[f"v{i}/{e}/times"].astype(np.float32)
    safetensors_np.save(out, tensors, {"format": "vidx-features", "format_version": "1", "bundle_fingerprint": "",
                                       "extractors": "{}", "videos": json.dumps(videos, separators=(",", ":"))})


def npz_to_safetensors(npz, out):
    """Every array of an .npz file into a safetensors file (no metadata)."""
    d = np.load(npz)
    safetensors_np.save(out, {k: np.ascontiguousarray(d[k]) for k in d.files}, {})


def import_features(d):
    """The per-video files of the vidx-import-features test: good .npy and safetensors for
    video a, a matrix of the wrong width for b, a NaN inside for c."""
    rng = np.random.default_rng(0)
    np.save(d + "/a-app.npy", rng.standard_normal((5, 12)).astype(np.float32))
    np.save(d + "/a-app-t.npy", np.stack([np.arange(5), np.arange(5) + 1], 1).astype(np.float32))
    safetensors_np.save(d + "/a-audio.safetensors", {"features": rng.standard_normal((3, 6)).astype(np.float32),
                                                     "times": np.zeros((3, 2), np.float32)}, {})
    np.save(d + "/b-app.npy", rng.standard_normal((4, 11)).astype(np.float32))
    nan = rng.standard_normal((2, 6)).astype(np.float32)
    nan[1, 1] = np.nan
    np.save(d + "/c-audio.npy", nan)


# --- Bundles --------------------------------------------------------------------------

def extract_bundle(d, builtin, imported="[]"):
    """A one-layer bundle with seeded weights: the starter's built-in experts `builtin`
    (comma-separated names) and imported experts [[name, width], ...], windowed."""
    import make_starter
    names, extra = builtin.split(","), json.loads(imported)
    config = copy.deepcopy(make_starter.STARTER_CONFIG)
    config["name"] = "test"
    config["layers"] = 1
    config["experts"] = [e for e in config["experts"] if e["name"] in names]
    for name, width in extra:
        config["experts"].append({"name": name, "width": width, "type_id": 7, "timing": "windowed",
                                  "extractor": "imported:" + name})
    config["experts"].sort(key=lambda e: e["name"])
    bundle_tools.write_bundle(d, config, bundle_tools.random_bundle(config, 1))


def mixed_bundle(d):
    """The mixed-bundle test's inputs: the starter's audio and motion experts plus an
    imported 8-wide `speech` expert, and speech features for videos clip and wide (9 wide)."""
    import make_starter
    config = copy.deepcopy(make_starter.STARTER_CONFIG)
    config["name"] = "mixed"
    config["layers"] = 1
    config["experts"] = [e for e in config["experts"] if e["name"] != "appearance"]
    config["experts"].append({"name": "speech", "width": 8, "type_id": 7, "timing": "windowed",
                              "extractor": "imported:speech/asr-embed@3"})
    bundle_tools.write_bundle(d + "/bundle", config, bundle_tools.random_bundle(config, 1))
    rng = np.random.default_rng(0)
    np.save(d + "/clip-speech.npy", rng.standard_normal((3, 8)).astype(np.float32))
    np.save(d + "/clip-speech-t.npy", np.array([[0, 2], [2, 4], [4, 6]], np.float32))
    np.save(d + "/wide-speech.npy", rng.standard_normal((3, 9)).astype(np.float32))


# --- Codes files ----------------------------------------------------------------------

def retrained_bundle(src, out, seed):
    """A copy of bundle `src` with every weight moved by N(0, 0.01^2) noise (seeded): a
    bundle "retrained" on the same experts and extractors, so another fingerprint and
    other codes."""
    config, weights = bundle_tools.load_bundle(src)
    rng = np.random.default_rng(int(seed))
    moved = {n: (w + rng.normal(0, 0.01, size=w.shape)).astype(np.float32) for n, w in weights.items()}
    config = copy.deepcopy(config)
    config["name"] = config.get("name", "bundle") + "-retrained"
    return bundle_tools.write_bundle(out, config, moved)


def keep_videos_from(path, first, fingerprint):
    """Rewrites a codes file keeping the videos numbered `first` and above (ids P-NNNNN),
    stamped with bundle `fingerprint`."""
    t, m = safetensors_np.load(path)
    videos = json.loads(m["videos"])
    keep = [i for i, v in enumerate(videos) if int(v["id"].split("-")[1]) >= int(first)]
    m["videos"] = json.dumps([videos[i] for i in keep])
    m["bundle_fingerprint"] = fingerprint
    safetensors_np.save(path, {"codes": t["codes"][keep]}, m)


# --- Schemas --------------------------------------------------------------------------

def _schema(name):
    with open(os.path.join(SCHEMAS, name)) as f:
        return json.load(f)


def schema_validator(name):
    """A validator for Schemas/`name` that resolves references to the other schemas
    (`{"$ref": "pipeline-config.schema.json"}`) by their `$id`."""
    import jsonschema
    import referencing
    resources = []
    for f in sorted(os.listdir(SCHEMAS)):
        if f.endswith(".schema.json"):
            s = _schema(f)
            resources.append((s["$id"], referencing.Resource.from_contents(s)))
    registry = referencing.Registry().with_resources(resources)
    schema = _schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=registry)


def validate_json(path, schema):
    """Validates the JSON file at `path` against Schemas/`schema`."""
    with open(path) as f:
        schema_validator(schema).validate(json.load(f))


def validate_json_text(text, schema):
    """Validates a JSON text against Schemas/`schema`."""
    schema_validator(schema).validate(json.loads(text))


def validate_json_lines(path, schema):
    """Validates every non-blank line of a JSON Lines file against Schemas/`schema`."""
    v = schema_validator(schema)
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    v.validate(json.loads(line))
                except Exception as e:
                    raise ValueError(f"{path}: line {number}: {e}") from e


def stats_statuses(path):
    """The statuses and error classes of an extract stats file (after validating it)."""
    validate_json(path, "extract-stats.schema.json")
    with open(path) as f:
        stats = json.load(f)
    return [[s["status"], (s["error"] or {}).get("class")] for s in stats]


# --- NumPy's legacy generator ---------------------------------------------------------

def legacy_choices(cases):
    """For [[n, T], ...]: sorted(RandomState(0).choice(n, T, replace=False)) each."""
    return [sorted(np.random.RandomState(0).choice(n, t, replace=False).tolist()) for n, t in json.loads(cases)]


# --- Vision ---------------------------------------------------------------------------

def cnn_images(path, count, size, seed):
    """The CNN tests' generated images (make_cnn_test_net.make_images) as .npy."""
    import make_cnn_test_net
    np.save(path, make_cnn_test_net.make_images(int(count), int(size), int(seed)))


def cnn_reference_file(npz, images, out):
    """A reference run's features and logits (npz) and its images (npy) in one safetensors file."""
    r, im = np.load(npz), np.load(images)
    safetensors_np.save(out, {"features": r["features"], "logits": r["logits"], "images": np.ascontiguousarray(im)}, {})


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    result = globals()[name](*args)
    if result is not None:
        print(json.dumps(result) if isinstance(result, (list, dict)) else result)
