"""The Python test scripts' shared plumbing (what tests/test.h is to the C tests): check()
counts and reports failed conditions, run() runs a script with this interpreter, finish()
prints the verdict and exits 1 when anything failed. Import after putting tests/ on sys.path."""
import subprocess
import sys

failures = 0


def check(cond, what):
    """Counts a failure (and names it on stderr) when cond is false."""
    global failures
    if not cond:
        failures += 1
        print(f"FAIL: {what}", file=sys.stderr)


def run(script, *args):
    """(exit code, stdout, stderr) of `python3 script args...`."""
    p = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def finish(name, detail=""):
    """Prints `name: ok` or the failure count (with detail), and exits 0 or 1."""
    if failures:
        print(f"{name}: {failures} failure(s){detail}", file=sys.stderr)
        sys.exit(1)
    print(f"{name}: ok")
    sys.exit(0)
