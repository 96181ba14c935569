"""kvprof_common.py - shared pieces of the device scripts (kvprof_ops.py, kvprof_validate.py).

Python 3.12 + torch only (transformers is imported by kvprof_llama.py, never here).

What lives here:
  * Run: the output folder of one step, its metadata (device, driver, torch, date, commit,
    command) written into meta.ini and as '#' lines at the top of every CSV, per-stage budgets
    and done/started markers (so a step restarted after a crash skips what it already did or
    what killed it), and an incremental CSV writer (one row, one flush).
  * Timer: CUDA events around CUDA-graph replays of `inner` calls (pure GPU time, no launch
    gaps), or around eager calls when capture fails, or perf_counter on the CPU (--smoke).
    Warm-ups first, medians of `reps` repetitions, p10/p90 beside them.
  * Rotating input sets: callers build k input sets so that k * bytes >= 3 x the L2 (60 MB on
    an H200), and a timed call cycles through them, so no timing reads a warm cache.
  * Model shapes read from sim/data/models/*.ini (the simulator's own files).
"""
from __future__ import annotations

import configparser
import datetime
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "sim" / "data" / "models"
FORMAT_VERSION = 1

# L2 of an H200 is 60 MB (KINDS.md); rotating sets cover 3x that unless the device reports more.
DEFAULT_L2_BYTES = 60 * 1000 * 1000


def log(msg: str) -> None:
    """One line on stdout with wall-clock seconds since the step started (flushed at once)."""
    t = time.monotonic() - _T0
    print(f"[{t:7.1f}s] {msg}", flush=True)


_T0 = time.monotonic()


# ---- metadata --------------------------------------------------------------------------------

def _run(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def git_commit() -> str:
    """KVLAB_COMMIT (the driver's caller sets it where the tree has no .git), else git, else
    .git/HEAD read by hand, else 'unknown'."""
    c = os.environ.get("KVLAB_COMMIT", "").strip()
    if c:
        return c
    c = _run(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    if c:
        dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
        return c + ("-dirty" if dirty else "")
    head = REPO / ".git" / "HEAD"
    try:
        h = head.read_text().strip()
        if h.startswith("ref: "):
            return (REPO / ".git" / h[5:]).read_text().strip()
        return h
    except OSError:
        return "unknown"


def pin_from_env() -> str:
    """KVLAB_PIN_CPU=N pins this process to CPU N (os.sched_setaffinity) before anything is
    timed: the host's launch speed drifts on the lent machine (docs/sim.md, eager rows), and
    kvprof_hostnoise.py measures whether pinning steadies it. Returns the CPU pinned, or "none"
    (unset); a value that is not a CPU of this process's set is an error naming it."""
    v = os.environ.get("KVLAB_PIN_CPU", "").strip()
    if not v:
        return "none"
    allowed = os.sched_getaffinity(0)
    if not v.isdigit() or int(v) not in allowed:
        raise SystemExit(f"KVLAB_PIN_CPU={v}: not a CPU this process may run on "
                         f"({min(allowed)}..{max(allowed)})")
    os.sched_setaffinity(0, {int(v)})
    return v


def device_meta(dev: torch.device) -> dict[str, str]:
    """Identity of the machine and software; every value a string (INI and CSV '#' lines)."""
    m: dict[str, str] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(),
        "command": os.environ.get("KVLAB_COMMAND", "") or shlex.join([sys.executable] + sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_runtime": str(torch.version.cuda),
        "host": socket.gethostname(),
        "cpu_threads": str(os.cpu_count()),
    }
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        m["device"] = p.name
        m["sm_count"] = str(p.multi_processor_count)
        m["memory_bytes"] = str(p.total_memory)
        m["capability"] = f"{p.major}.{p.minor}"
        l2 = getattr(p, "L2_cache_size", 0)
        if l2:
            m["l2_bytes"] = str(l2)
        q = _run(["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.max.sm,clocks.mem,"
                  "power.limit,temperature.gpu", "--format=csv,noheader"])
        if q:
            f = [x.strip() for x in q.splitlines()[0].split(",")]
            keys = ["driver", "clock_sm_now", "clock_sm_max", "clock_mem_now", "power_limit",
                    "temperature_c"]
            for k, v in zip(keys, f):
                m[k] = v
        else:
            m["driver"] = "unknown (nvidia-smi not answering)"
        try:
            m["cudnn"] = str(torch.backends.cudnn.version())
        except Exception:  # noqa: BLE001 - informational only
            pass
    else:
        m["device"] = "cpu-smoke"
        m["driver"] = "none"
    try:
        import transformers  # noqa: PLC0415 - optional, recorded when present

        m["transformers"] = transformers.__version__
    except Exception:  # noqa: BLE001
        m["transformers"] = "absent"
    return m


def l2_bytes(dev: torch.device) -> int:
    if dev.type != "cuda":
        return 1 << 20
    p = torch.cuda.get_device_properties(dev)
    return int(getattr(p, "L2_cache_size", 0) or DEFAULT_L2_BYTES)


# ---- one step's output folder ----------------------------------------------------------------

class Run:
    """Output folder of one step: meta.ini, CSVs with '#' metadata lines, stage markers,
    per-stage budgets. Budget: each stage gets a share of the step's soft budget (seconds);
    a stage checks `over()` between grid points and stops early (logging what it skipped)."""

    def __init__(self, out: Path, step: str, dev: torch.device, smoke: bool, budget_s: float):
        self.out = out
        self.step = step
        self.dev = dev
        self.smoke = smoke
        pinned = pin_from_env()  # before the folder exists: a bad value leaves nothing behind
        self.out.mkdir(parents=True, exist_ok=True)
        self.meta = device_meta(dev)
        self.meta["step"] = step
        self.meta["smoke"] = "true" if smoke else "false"
        self.meta["format"] = "kvlab-gpu-profile"
        self.meta["version"] = str(FORMAT_VERSION)
        self.meta["pinned_cpu"] = pinned
        self.budget_s = budget_s
        self.t_start = time.monotonic()
        self.stage_deadline = math.inf
        self.stage_name = ""
        self._writers: dict[str, CsvOut] = {}
        self.notes: list[str] = []
        self.write_meta()
        threading.Thread(target=self._watchdog, daemon=True).start()

    GRACE_S = 20.0

    def _watchdog(self) -> None:
        """A stage that overruns its deadline by GRACE_S (a hung device call: a stage checks its
        budget only between grid points) ends the process with status 4; the driver resumes the
        step, skipping that stage."""
        while True:
            time.sleep(1.0)
            if time.monotonic() > self.stage_deadline + self.GRACE_S:
                log(f"stage {self.stage_name}: {self.GRACE_S:.0f} s past its budget, abandoned")
                with open(self.out / "stages.csv", "a") as f:
                    f.write(f"{self.step},{self.stage_name},FAILED (overran its budget; killed)\n")
                self.marker(self.stage_name, "done").write_text("killed")
                sys.stdout.flush()
                os._exit(4)

    def write_meta(self) -> None:
        path = self.out / "meta.ini"
        if path.exists():  # a resumed run keeps the first run's identity, adds a line
            old = configparser.ConfigParser(interpolation=None)
            old.read(path)
            if old.has_section("profile"):
                for k, v in old["profile"].items():
                    if k not in ("date_utc",):
                        self.meta.setdefault(k, v)
                self.meta["resumed_at_utc"] = self.meta["date_utc"]
                self.meta["date_utc"] = old["profile"].get("date_utc", self.meta["date_utc"])
        cp = configparser.ConfigParser(interpolation=None)
        cp["profile"] = {k: v.replace("\n", " ") for k, v in self.meta.items()}
        with open(path, "w") as f:
            f.write("; written by sim/profiling (docs/sim.md: GPU profile format)\n")
            cp.write(f)

    def header_lines(self) -> list[str]:
        keys = ["format", "version", "step", "smoke", "device", "driver", "torch", "cuda_runtime",
                "transformers", "date_utc", "commit", "command"]
        return [f"# {k}: {self.meta.get(k, '')}" for k in keys]

    def csv(self, name: str, columns: list[str]) -> "CsvOut":
        if name not in self._writers:
            self._writers[name] = CsvOut(self.out / name, columns, self.header_lines())
        return self._writers[name]

    # stages ------------------------------------------------------------------------------
    def marker(self, stage: str, what: str) -> Path:
        return self.out / f".{stage}.{what}"

    def begin(self, stage: str, share: float) -> None:
        self.stage_name = stage
        used = time.monotonic() - self.t_start
        left = max(0.0, self.budget_s - used)
        self.stage_deadline = time.monotonic() + max(2.0, min(left, share * self.budget_s))
        self.marker(stage, "started").write_text(str(time.time()))
        log(f"stage {stage}: start (budget {self.stage_deadline - time.monotonic():.0f} s)")

    def over(self) -> bool:
        return time.monotonic() > self.stage_deadline

    def end(self, stage: str, status: str) -> None:
        self.stage_deadline = math.inf
        self.marker(stage, "done").write_text(status)
        with open(self.out / "stages.csv", "a") as f:
            f.write(f"{self.step},{stage},{status.replace(',', ';')}\n")
        log(f"stage {stage}: {status}")


class CsvOut:
    """Append-only CSV: '#' metadata lines and a header once, then one flushed row per call.
    A restarted step appends to the same file (the header is not repeated)."""

    def __init__(self, path: Path, columns: list[str], header: list[str]):
        self.path = path
        self.columns = columns
        fresh = not path.exists() or path.stat().st_size == 0
        self.f = open(path, "a", buffering=1)
        if fresh:
            for h in header:
                self.f.write(h + "\n")
            self.f.write(",".join(columns) + "\n")
            self.f.flush()

    def row(self, **kv) -> None:
        missing = [c for c in self.columns if c not in kv]
        if missing:
            raise KeyError(f"{self.path.name}: row lacks {missing}")
        vals = []
        for c in self.columns:
            v = kv[c]
            if isinstance(v, float):
                vals.append(f"{v:.6g}" if math.isfinite(v) else "nan")
            else:
                vals.append(str(v).replace(",", ";"))
        self.f.write(",".join(vals) + "\n")
        self.f.flush()


# ---- timing ----------------------------------------------------------------------------------

class Timer:
    """Times a list of callables (rotating input sets), one call = fns[i % len(fns)]().

    CUDA: eager warm-up of every set on a side stream, then a CUDA graph of `inner` calls; each
    repetition is one replay between two events; per-call time = replay time / inner. When
    capture fails (an op that cannot be captured) the same is done eagerly: events around
    `inner` eager calls (launch gaps included; method says which). CPU (--smoke):
    perf_counter around `inner` calls.

    Returns a dict: us (median per call), p10_us, p90_us, reps, inner, method."""

    def __init__(self, dev: torch.device, smoke: bool):
        self.dev = dev
        self.cuda = dev.type == "cuda"
        self.smoke = smoke
        self.target_us = 300.0 if not smoke else 50.0  # aim: one timed repetition >= this

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.dev)

    def _estimate_us(self, fns) -> float:
        """Time of one call, eager, after its warm-up (chooses `inner`)."""
        if self.cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            n = min(len(fns), 4)
            s.record()
            for i in range(n):
                fns[i]()
            e.record()
            e.synchronize()
            return max(1e-3, s.elapsed_time(e) * 1e3 / n)
        t = time.perf_counter()
        fns[0]()
        return max(1e-3, (time.perf_counter() - t) * 1e6)

    def time(self, fns, reps: int = 7, warmup: int = 2, graph: bool = True,
             max_inner: int = 64) -> dict:
        if callable(fns):
            fns = [fns]
        if self.smoke:  # the CPU flow test: the numbers mean nothing, keep it short
            reps, warmup, fns = min(reps, 3), 1, fns[:2]
        k = len(fns)
        if self.cuda:
            side = torch.cuda.Stream(self.dev)
            side.wait_stream(torch.cuda.current_stream(self.dev))
            with torch.cuda.stream(side):
                for f in fns:
                    f()
            torch.cuda.current_stream(self.dev).wait_stream(side)
            self.sync()
        else:
            for f in fns:
                f()
        est = self._estimate_us(fns)
        inner = int(min(max_inner, max(1, math.ceil(self.target_us / est))))
        if inner > 1 and inner < k:
            inner = k
        samples: list[float] = []
        method = "timer"
        if self.cuda:
            g = None
            if graph:
                try:
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        for i in range(inner):
                            fns[i % k]()
                    method = "graph"
                except Exception as ex:  # noqa: BLE001 - fall back to eager, say so
                    g = None
                    method = f"eager ({type(ex).__name__})"
                    if not cuda_alive(self.dev):
                        raise FatalCuda("the CUDA context is unusable after a failed capture") from ex
            else:
                method = "eager"
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
            for _ in range(warmup):
                if g is not None:
                    g.replay()
                else:
                    for i in range(inner):
                        fns[i % k]()
            for s, e in ev:
                s.record()
                if g is not None:
                    g.replay()
                else:
                    for i in range(inner):
                        fns[i % k]()
                e.record()
            torch.cuda.synchronize(self.dev)
            samples = [s.elapsed_time(e) * 1e3 / inner for s, e in ev]
            del g
        else:
            for _ in range(warmup):
                fns[0]()
            for _ in range(reps):
                t = time.perf_counter()
                for i in range(inner):
                    fns[i % k]()
                samples.append((time.perf_counter() - t) * 1e6 / inner)
        return summarize(samples, inner=inner, method=method)


def summarize(samples: list[float], inner: int = 1, method: str = "") -> dict:
    s = sorted(samples)
    n = len(s)

    def q(p: float) -> float:
        if n == 1:
            return s[0]
        x = p * (n - 1)
        i = int(math.floor(x))
        j = min(i + 1, n - 1)
        return s[i] + (s[j] - s[i]) * (x - i)

    return {"us": q(0.5), "p10_us": q(0.1), "p90_us": q(0.9), "reps": n, "inner": inner,
            "method": method}


def wall_time(dev: torch.device, fn, reps: int, warmup: int = 2) -> dict:
    """Synchronised wall-clock time of fn() (host and device together): for host-overhead
    measurements, where launch cost is the quantity."""
    for _ in range(warmup):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        out.append((time.perf_counter() - t) * 1e6)
    return summarize(out, method="wall")


def n_sets(bytes_per_set: int, dev: torch.device, lo: int = 2, hi: int = 64) -> int:
    """How many rotating input sets cover 3 x L2 (at least lo)."""
    need = 3 * l2_bytes(dev)
    return int(min(hi, max(lo, math.ceil(need / max(1, bytes_per_set)))))


def randn(shape, dev: torch.device, dtype=torch.bfloat16, scale: float = 1.0) -> torch.Tensor:
    """Random normal data (never zeros: METHOD.md), generated on the device."""
    t = torch.randn(shape, device=dev, dtype=dtype)
    if scale != 1.0:
        t.mul_(scale)
    return t


class FatalCuda(RuntimeError):
    """Raised where the CUDA context is known to be unusable."""


def is_fatal_cuda(ex: BaseException) -> bool:
    """Errors after which the CUDA context is unusable: the step exits and the driver resumes
    it in a fresh process, skipping the stage that failed."""
    if isinstance(ex, FatalCuda):
        return True
    m = f"{type(ex).__name__}: {ex}"
    return any(s in m for s in ("device-side assert", "illegal memory access",
                                "AcceleratorError", "CUDA error: unspecified launch failure",
                                "misaligned address", "an illegal instruction"))


def pick_device(smoke: bool, who: str) -> torch.device | None:
    """CPU for --smoke (2 threads), else the first CUDA device (tf32 off); None when absent."""
    if smoke:
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        return torch.device("cpu")
    if not torch.cuda.is_available():
        print(f"{who}: no CUDA device (use --smoke for the CPU flow test)", file=sys.stderr)
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch.device("cuda", 0)


def run_stages(run: "Run", names: list[str], share: dict[str, float], call, resume: bool) -> int:
    """Runs the named stages in order: call(name) -> status line. An exception ends its stage
    (FAILED, with the message) and the next stage runs, except after a fatal CUDA error: then
    exit status 3, and the driver restarts the step with --resume, which skips the stages
    done and the one that was running (started, not done). 2: an unknown stage name.
    Test hook: KVPROF_INJECT=<stage>:raise|exit|hang makes that stage fail that way."""
    import traceback  # noqa: PLC0415

    for st in names:
        if st not in share:
            print(f"unknown stage '{st}' (stages: {', '.join(share)})", file=sys.stderr)
            return 2
    for st in names:
        if resume and (run.marker(st, "done").exists() or run.marker(st, "started").exists()):
            if not run.marker(st, "done").exists():
                run.end(st, "FAILED (the process died in it; skipped on resume)")
            continue
        run.begin(st, share[st])
        inject = os.environ.get("KVPROF_INJECT", "")
        if inject == f"{st}:exit":
            os._exit(9)
        if inject == f"{st}:hang":
            time.sleep(1e6)
        try:
            if inject == f"{st}:raise":
                raise RuntimeError("injected failure (KVPROF_INJECT)")
            status = call(st)
        except Exception as ex:  # noqa: BLE001 - record it and go on with the next stage
            traceback.print_exc()
            first = str(ex).splitlines()[0][:200] if str(ex) else ""
            run.end(st, f"FAILED {type(ex).__name__}: {first}")
            if is_fatal_cuda(ex):
                return 3
            free_memory(run.dev)
            continue
        run.end(st, status)
    return 0


def pinned_random(shape, dev: torch.device, smoke: bool) -> torch.Tensor:
    """Host tensor of random bf16 in page-locked memory (plain memory in --smoke): allocated
    pinned and filled by one copy from the device (a CPU normal_ of a GiB takes seconds)."""
    if smoke or dev.type != "cuda":
        t = torch.empty(shape, dtype=torch.bfloat16)
        t.normal_()
        return t
    t = torch.empty(shape, dtype=torch.bfloat16, pin_memory=True)
    t.copy_(torch.randn(shape, dtype=torch.bfloat16, device=dev))
    return t


def cuda_alive(dev: torch.device) -> bool:
    """Whether the CUDA context still runs work (after a failed graph capture, say)."""
    if dev.type != "cuda":
        return True
    try:
        x = torch.ones(16, device=dev)
        x.add_(1)
        torch.cuda.synchronize(dev)
        return float(x.sum()) == 32.0
    except Exception:  # noqa: BLE001
        return False


def free_memory(dev: torch.device) -> None:
    import gc  # noqa: PLC0415

    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()


# ---- model shapes ----------------------------------------------------------------------------

class ModelShape:
    """[model] of a sim/data/models/<stem>.ini (docs/sim.md): the fields the profile needs."""

    def __init__(self, stem: str, sec: configparser.SectionProxy):
        self.stem = stem
        self.name = sec.get("name")
        self.layers = sec.getint("layers")
        self.heads = sec.getint("heads")
        self.kv_heads = sec.getint("kv_heads")
        self.head_dim = sec.getint("head_dim")
        self.hidden = sec.getint("hidden")
        self.ffn = sec.getint("ffn")
        self.ffn_matrices = sec.getint("ffn_matrices")
        self.vocab = sec.getint("vocab")
        self.context_window = sec.getint("context_window")

    def kv_bytes_per_token_layer(self, bpe: int = 2) -> int:
        return 2 * self.kv_heads * self.head_dim * bpe


# --smoke: tiny models with the code paths of the real ones (MHA + SwiGLU, GQA + GELU); the
# steps write them as model files (out/models/<stem>.ini) so the CPU-side chain reads the same
# shapes the smoke run used.
SMOKE_MODELS = {
    "smoke-a": dict(layers=2, heads=4, kv_heads=4, head_dim=32, hidden=128, ffn=256,
                    ffn_matrices=3, vocab=512),
    "smoke-b": dict(layers=3, heads=6, kv_heads=6, head_dim=32, hidden=192, ffn=512,
                    ffn_matrices=3, vocab=512),
    "smoke-gqa": dict(layers=2, heads=8, kv_heads=2, head_dim=16, hidden=128, ffn=512,
                      ffn_matrices=2, vocab=640),
}
# what a validation stage named after a real model runs in --smoke
SMOKE_FOR = {"llama-2-7b": "smoke-a", "llama-2-13b": "smoke-b"}


def _smoke_section(stem: str) -> dict[str, str]:
    d = {k: str(v) for k, v in SMOKE_MODELS[stem].items()}
    d.update(name=stem, tied_embeddings="false", bytes_per_elem="2", context_window="4096",
             source="kvprof --smoke: a tiny shape for the CPU flow test (not a real model)")
    return d


def write_smoke_models(out: Path) -> None:
    (out / "models").mkdir(parents=True, exist_ok=True)
    for stem in SMOKE_MODELS:
        with open(out / "models" / f"{stem}.ini", "w") as f:
            f.write("; written by sim/profiling --smoke\n[model]\n")
            for k, v in _smoke_section(stem).items():
                f.write(f"{k} = {v}\n")


def load_models(names: list[str] | None = None, smoke: bool = False) -> list[ModelShape]:
    """Every model file (sorted by stem), or the named stems in the given order; --smoke: the
    tiny SMOKE_MODELS (a real stem is mapped through SMOKE_FOR)."""
    if smoke:
        stems = [SMOKE_FOR.get(s, s) for s in names] if names else list(SMOKE_MODELS)
        out = []
        for s in stems:
            cp = configparser.ConfigParser(interpolation=None)
            cp["model"] = _smoke_section(s)
            out.append(ModelShape(s, cp["model"]))
        return out
    stems = names or sorted(p.stem for p in MODELS_DIR.glob("*.ini"))
    out = []
    for s in stems:
        cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
        path = MODELS_DIR / f"{s}.ini"
        if not cp.read(path):
            raise FileNotFoundError(f"{path}: no such model file")
        out.append(ModelShape(s, cp["model"]))
    return out


def gemm_shapes(m: ModelShape, tp: int) -> list[tuple[str, int, int]]:
    """(op, n, k) of one layer's projections on one of tp GPUs, as transformers' Llama runs
    them (separate q, k, v, gate, up: nn.Linear each; y = x W^T, W is (n, k)). Column-parallel
    ops split n, row-parallel ops split k (Megatron). Empty when the heads do not divide."""
    H, Hk, D, h, F = m.heads, m.kv_heads, m.head_dim, m.hidden, m.ffn
    if H % tp or F % tp or (Hk % tp and Hk >= tp):
        return []
    hk = max(1, Hk // tp)
    ops = [("q", H * D // tp, h), ("k", hk * D, h), ("v", hk * D, h), ("o", h, H * D // tp)]
    if m.ffn_matrices == 3:
        ops += [("gate", F // tp, h), ("up", F // tp, h), ("down", h, F // tp)]
    else:
        ops += [("up", F // tp, h), ("down", h, F // tp)]
    return ops


def layout(m: ModelShape, tp: int) -> tuple[int, int, int] | None:
    """(heads, kv_heads, head_dim) on one of tp GPUs, or None when the heads do not divide."""
    if m.heads % tp or (m.kv_heads % tp and m.kv_heads >= tp):
        return None
    return (m.heads // tp, max(1, m.kv_heads // tp), m.head_dim)


def log_grid(lo: int, hi: int, halves: bool = True) -> list[int]:
    """Powers of two from lo to hi, with the 1.5x points between them when halves."""
    out = []
    p = 1
    while p <= hi:
        for v in ((p, p * 3 // 2) if halves and p >= 2 else (p,)):
            if lo <= v <= hi:
                out.append(v)
        p *= 2
    return sorted(set(out))
