"""Shared helpers of the recording pipeline (traces/record/): logging, corpus I/O, environment.

Only the standard library is imported here, so every step can import it (the corpus step needs
neither numpy nor torch).
"""
import datetime
import hashlib
import json
import lzma
import os
import platform
import subprocess
import sys
import time

_T0 = time.time()


def log(msg):
    """One timestamped line on stderr (seconds since the step started)."""
    sys.stderr.write("[%7.1fs] %s\n" % (time.time() - _T0, msg))
    sys.stderr.flush()


def die(msg, code=2):
    sys.stderr.write("error: %s\n" % msg)
    sys.exit(code)


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def doc_split(doc_id, heldout_mod=32):
    """Deterministic train / held-out split of a corpus document by its id: a document is
    held out when the first 4 bytes of sha256(id), read big-endian, are 0 modulo heldout_mod
    (about 1 in 32 documents)."""
    h = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:4], "big")
    return "heldout" if h % heldout_mod == 0 else "train"


def doc_hash_unit(doc_id, salt):
    """A deterministic number in [0, 1) per document (for subsampling to a size cap)."""
    h = hashlib.sha256((salt + "\0" + doc_id).encode("utf-8")).digest()[:8]
    return int.from_bytes(h, "big") / float(1 << 64)


def read_corpus(path, split=None, kind=None):
    """Yields the documents (dicts with id, pkg, kind, split, text) of a corpus.jsonl.xz, in
    file order, optionally filtered by split ("train" / "heldout") and kind ("prose" / "code")."""
    if not os.path.exists(path):
        die("%s: corpus archive not found (build it with corpus.py build)" % path)
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                d = json.loads(line)
            except ValueError as e:
                die("%s:%d: not a JSON line (%s)" % (path, lineno, e))
            for key in ("id", "pkg", "kind", "split", "text"):
                if key not in d:
                    die("%s:%d: document without '%s'" % (path, lineno, key))
            if split and d["split"] != split:
                continue
            if kind and d["kind"] != kind:
                continue
            yield d


def write_json(path, obj):
    """Writes JSON atomically (temporary file + rename)."""
    tmp = path + ".tmp.%d" % os.getpid()
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path):
    if not os.path.exists(path):
        die("%s: not found" % path)
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as e:
            die("%s: invalid JSON (%s)" % (path, e))


def machine_description():
    """CPU model, core count, memory and (when torch sees one) the GPU name."""
    desc = {"hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8],
            "platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    desc["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            desc["mem_gib"] = round(int(f.readline().split()[1]) / 1048576.0, 1)
    except OSError:
        pass
    try:
        import torch
        desc["torch"] = torch.__version__
        if torch.cuda.is_available():
            desc["gpu"] = torch.cuda.get_device_name(0)
            desc["cuda"] = torch.version.cuda
        desc["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    for mod in ("numpy", "h5py", "transformers", "tokenizers", "safetensors"):
        try:
            desc[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return desc


def git_describe():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"
