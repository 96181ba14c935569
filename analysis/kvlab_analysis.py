"""kvlab_analysis — shared helpers for analysis/ scripts (Python 3 standard library only).

Tidy tables are CSV files with one observation per row: the swept parameters of a point (from its
point.ini), its seed and id, then the columns of the tool's result file for that point.
"""
import configparser
import csv
import math
import os
import stat
import sys


class AnalysisError(Exception):
    """Bad input: the message names the file (and line or column) and what is wrong."""


def read_ini(path):
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    cp.optionxform = str  # keep key case
    try:
        with open(path, encoding="utf-8") as f:
            cp.read_file(f)
    except (OSError, configparser.Error) as e:
        raise AnalysisError(f"{path}: {e}") from None
    return cp


def read_csv(path):
    """Rows of a CSV file as dicts; every row must have the header's width. Lines starting with
    '#' (provenance comments, as kvsim writes) are skipped."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            r = csv.reader(line for line in f if not line.startswith("#"))
            try:
                header = next(r)
            except StopIteration:
                raise AnalysisError(f"{path}: empty file (no header)") from None
            rows = []
            for i, rec in enumerate(r, start=2):
                if not rec:
                    continue
                if len(rec) != len(header):
                    raise AnalysisError(
                        f"{path}:{i}: {len(rec)} fields, header has {len(header)}")
                rows.append(dict(zip(header, rec)))
            return header, rows
    except OSError as e:
        raise AnalysisError(f"{path}: {e}") from None


def pivot_key_value(header, rows):
    """A two-column key,value table (kvsim's summary.csv) as one row with a column per key."""
    if header == ["key", "value"]:
        return [r["key"] for r in rows], [{r["key"]: r["value"] for r in rows}]
    return header, rows


def check_output_path(path):
    """The output rule of common/kv_fs.h: replace only a regular file or nothing. A symbolic link,
    FIFO, device, socket or directory at `path` raises AnalysisError naming it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode):
        return
    kinds = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    what = next((w for f, w in kinds if f(st.st_mode)), "not a regular file")
    raise AnalysisError(f"{path}: is {what}; an output replaces only a regular file or nothing")


def write_csv_atomic(path, header, rows):
    check_output_path(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow([row.get(h, "") for h in header])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path, text):
    check_output_path(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def to_float(v, where):
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise AnalysisError(f"{where}: '{v}' is not a number") from None
    return x


def parse_where(expr, where):
    """'a=1, b=x' -> [('a','1'), ('b','x')]; empty -> []."""
    out = []
    for part in [p.strip() for p in (expr or "").split(",") if p.strip()]:
        if "=" not in part:
            raise AnalysisError(f"{where}: '{part}' is not key=value")
        k, v = part.split("=", 1)
        out.append((k.strip(), v.strip()))
    return out


def select(rows, conds, table, where):
    """Rows matching every (column, value); a column missing from the table is an error."""
    if rows:
        for k, _ in conds:
            if k not in rows[0]:
                raise AnalysisError(
                    f"{where}: table {table} has no column '{k}' "
                    f"(columns: {', '.join(sorted(rows[0]))})")
    return [r for r in rows if all(r.get(k) == v for k, v in conds)]


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) >= 1000 or abs(x) < 0.01 else f"{x:.{digits}f}"
    return str(x)


def die(msg):
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    sys.exit(1)
