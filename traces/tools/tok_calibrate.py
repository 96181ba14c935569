#!/usr/bin/env python3
"""Calibrates the script-aware token estimate (traces/tokenizer.h, TRACE_TOK_APPROX_SCRIPT)
against a BPE tokenizer, and measures it on text it was not fitted to.

  tok_calibrate.py [--tokenizer PATH] [--kvtrace build/bin/kvtrace] [--check]

The text: the message catalogs this machine's Debian packages install under /usr/share/locale
(gettext .mo files): each translated string (msgstr) of the locales zh_CN, zh_TW, ja, ko and ru
is one piece, and each English original (msgid, once per catalog) another -- short, message-sized
texts mixing prose with format strings, paths and options, in the scripts the estimate weighs.
Catalogs are split by a hash of their name: those with an even CRC-32 are the calibration set,
the others are held out. Also held out: every paragraph of the licences in
/usr/share/common-licenses (English prose), the Latin-script locales de, fr and es (not fitted:
the estimate cannot tell English from German), and the ShareGPT-format test file
tests/traces/data/sharegpt_tools_zh.json (tool calls, Chinese and English), counted as the
importer counts it (record "system" and "tools", then every message).

The tokenizer (default: GPT-2's files, $KVLAB_SHARED_DIR/data/tokenizers/gpt2 or
../shared/data/tokenizers/gpt2 beside the source tree) counts every piece through
`kvtrace tokenize --records`, which also prints the estimate's features and its current count,
so the features are computed by the C code the importers run. The weights are the least-squares
fit of tokens on features weighted by 1/tokens (relative error, a piece's count being roughly
Poisson in its length). The script prints the fitted weights next to the built-in ones
(traces/tokenizer.c, trace_tok_script_weights) and the held-out errors of both.

Without the tokenizer files or the catalogs it says so and exits 0 (77 with --check, CTest's
"skipped"). --check (CTest): exit 1 when the built-in weights miss the acceptance on held-out
text -- the Chinese conversations of the test file or the held-out zh_CN / zh_TW catalogs off by
more than 10% in total. Python standard library only.
"""
import argparse
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
FIT_LOCALES = ["zh_CN", "zh_TW", "ja", "ko", "ru"]
LATIN_LOCALES = ["de", "fr", "es"]
LICENCES = ["Apache-2.0", "Artistic", "GFDL-1.3", "GPL-2", "GPL-3", "LGPL-2.1", "MPL-2.0"]
ZH_FILE = os.path.join(REPO, "tests", "traces", "data", "sharegpt_tools_zh.json")


def skip(msg, check):
    print("tok_calibrate: skipped: " + msg)
    sys.exit(77 if check else 0)


def read_mo(path):
    """(msgid, msgstr) pairs of a gettext .mo file, first plural form of each, header dropped;
    None when the file is not a UTF-8 catalog."""
    data = open(path, "rb").read()
    if len(data) < 28:
        return None
    for order in ("<", ">"):
        magic, _rev, n, oo, ot = struct.unpack(order + "5I", data[:20])
        if magic == 0x950412DE:
            break
    else:
        return None
    out = []
    try:
        for i in range(n):
            lo, po = struct.unpack(order + "2I", data[oo + 8 * i:oo + 8 * i + 8])
            lt, pt = struct.unpack(order + "2I", data[ot + 8 * i:ot + 8 * i + 8])
            k = data[po:po + lo].split(b"\0")[0].decode("utf-8")
            v = data[pt:pt + lt].split(b"\0")[0].decode("utf-8")
            if k and v:
                out.append((k.split("\x04")[-1], v))  # msgctxt\x04msgid
    except (UnicodeDecodeError, struct.error):
        return None
    return out


def catalog_pieces(locales):
    """Pieces by set name: 'fit:<loc>' and 'held:<loc>' (loc = 'en' for the originals)."""
    sets, seen_en, files = {}, set(), []
    for loc in locales:
        d = os.path.join("/usr/share/locale", loc, "LC_MESSAGES")
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith(".mo"):
                continue
            pairs = read_mo(os.path.join(d, name))
            if not pairs:
                continue
            files.append(os.path.join(d, name))
            dom = name[:-3]
            part = "fit" if zlib.crc32(dom.encode()) % 2 == 0 else "held"
            if loc in LATIN_LOCALES:
                part = "held"
            for k, v in pairs:
                sets.setdefault("%s:%s" % (part, loc), []).append(v)
                if loc not in LATIN_LOCALES and (dom, k) not in seen_en:
                    seen_en.add((dom, k))
                    sets.setdefault("%s:en" % part, []).append(k)
    return sets, files


def licence_paragraphs():
    out = []
    for name in LICENCES:
        p = os.path.join("/usr/share/common-licenses", name)
        if os.path.exists(p):
            out += [x for x in open(p, encoding="utf-8", errors="replace").read().split("\n\n")
                    if x.strip()]
    return out


def zh_file_texts():
    """Per conversation of the test file, the texts the ShareGPT importer counts (the same rule
    as tests/traces/data/sharegpt_tools_zh_ref.py, which stays free of this repository's code)."""
    convs = []
    for r in json.load(open(ZH_FILE, encoding="utf-8")):
        texts = []
        if r.get("system"):
            texts.append(r["system"])
        tools = r.get("tools")
        if isinstance(tools, str) and tools not in ("", "[]"):
            texts.append(tools)
        elif isinstance(tools, (list, dict)) and tools:
            texts.append(json.dumps(tools, ensure_ascii=False))
        for m in r.get("conversations", r.get("messages", [])):
            texts.append(m.get("value", m.get("content")))
        convs.append(texts)
    return convs


def count(kvtrace, tokenizer, pieces):
    """Rows (tokens, script estimate, features...) of each piece, through kvtrace."""
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(b"\0".join(p.encode("utf-8") for p in pieces))
        path = f.name
    try:
        out = subprocess.run([kvtrace, "tokenize", "--tokenizer", tokenizer, "--records", path],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    lines = out.rstrip("\n").split("\n")
    builtin = [float(x) for x in lines.pop(0).split(":")[1].split()]
    names = lines[0].split("\t")[4:]
    rows = [[int(x) for x in l.split("\t")[2:]] for l in lines[1:]]
    if len(rows) != len(pieces):
        sys.exit("tok_calibrate: kvtrace returned %d records for %d pieces" % (len(rows), len(pieces)))
    return names, builtin, rows


def solve(a, b):
    """Solves a x = b (Gaussian elimination with partial pivoting)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        if abs(m[p][c]) < 1e-12:
            sys.exit("tok_calibrate: feature %d never occurs in the calibration text" % c)
        m[c], m[p] = m[p], m[c]
        for r in range(n):
            if r != c:
                k = m[r][c] / m[c][c]
                m[r] = [x - k * y for x, y in zip(m[r], m[c])]
    return [m[i][n] / m[i][i] for i in range(n)]


def fit(rows):
    """Weights minimising sum over pieces of (w.f - tokens)^2 / tokens."""
    k = len(rows[0]) - 2
    a = [[0.0] * k for _ in range(k)]
    b = [0.0] * k
    for r in rows:
        y, f = r[0], r[2:]
        w = 1.0 / max(y, 1)
        for i in range(k):
            if f[i]:
                b[i] += w * f[i] * y
                for j in range(k):
                    a[i][j] += w * f[i] * f[j]
    return solve(a, b)


def estimate(weights, f):
    return max(1, int(math.floor(sum(w * x for w, x in zip(weights, f)) + 0.5))) if any(f) else 0


def errors(rows, est):
    """Signed error of the total, median and p90 |error| of pieces with >= 8 tokens."""
    real = sum(r[0] for r in rows)
    tot = sum(est(r) for r in rows)
    rel = sorted(abs(est(r) - r[0]) / r[0] for r in rows if r[0] >= 8)
    q = (lambda p: rel[int(p * (len(rel) - 1))]) if rel else (lambda p: float("nan"))
    return real, (tot - real) / real if real else 0.0, q(0.5), q(0.9), len(rel)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = os.environ.get("KVLAB_SHARED_DIR", os.path.join(REPO, "..", "shared"))
    ap.add_argument("--tokenizer", default=os.path.join(shared, "data", "tokenizers", "gpt2"))
    ap.add_argument("--kvtrace", default=os.path.join(REPO, "build", "bin", "kvtrace"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    tok = args.tokenizer
    if not (os.path.exists(os.path.join(tok, "tokenizer.json")) or
            os.path.exists(os.path.join(tok, "vocab.bpe")) or os.path.isfile(tok)):
        skip("no tokenizer at %s (--tokenizer PATH names one)" % tok, args.check)
    if not os.access(args.kvtrace, os.X_OK):
        sys.exit("tok_calibrate: %s is not built (--kvtrace BIN)" % args.kvtrace)

    sets, files = catalog_pieces(FIT_LOCALES + LATIN_LOCALES)
    if "fit:zh_CN" not in sets or "held:zh_CN" not in sets:
        skip("no zh_CN message catalogs under /usr/share/locale", args.check)
    sets["held:licences"] = licence_paragraphs()
    convs = zh_file_texts()
    sets["held:sharegpt_tools_zh"] = [t for c in convs for t in c]
    order = sorted(sets)
    pieces = [p for s in order for p in sets[s]]
    names, builtin, rows = count(args.kvtrace, tok, pieces)
    by_set, i = {}, 0
    for s in order:
        by_set[s] = rows[i:i + len(sets[s])]
        i += len(sets[s])

    fit_rows = [r for s in order if s.startswith("fit:") for r in by_set[s]]
    w = fit(fit_rows)
    digest = hashlib.sha256("\0".join(p for s in order if s.startswith("fit:")
                                      for p in sets[s]).encode()).hexdigest()
    print("tokenizer %s; calibration text: %d catalogs of %s (%d pieces, %d tokens, sha256 %s)"
          % (tok, len([f for f in files if not any("/%s/" % l in f for l in LATIN_LOCALES)]),
             ", ".join(FIT_LOCALES + ["en"]), len(fit_rows), sum(r[0] for r in fit_rows),
             digest[:16]))
    print("%-12s %8s %8s" % ("feature", "fitted", "built-in"))
    for k, n in enumerate(names):
        print("%-12s %8.3f %8.3f" % (n, w[k], builtin[k]))
    print("C initialiser (traces/tokenizer.c trace_tok_script_weights):\n    " +
          ", ".join("%.3f" % x for x in w))
    print("\n%-28s %8s | %-28s | %-28s | %s" % ("held-out set", "tokens", "built-in: total, med, p90",
                                               "fitted: total, med, p90", "chars/4 total"))
    res = {}
    for s in order:
        if s.startswith("fit:"):
            continue
        rs = by_set[s]
        real, tb, mb, pb, n8 = errors(rs, lambda r: r[1])
        _, tf, mf, pf, _ = errors(rs, lambda r: estimate(w, r[2:]))
        c4 = sum(math.ceil(len(p) / 4) for p in sets[s])
        res[s] = tb
        print("%-28s %8d | %+7.1f%% %6.1f%% %6.1f%%     | %+7.1f%% %6.1f%% %6.1f%%     | %+6.1f%%"
              % (s[5:] + " (%d)" % n8, real, 100 * tb, 100 * mb, 100 * pb, 100 * tf, 100 * mf,
                 100 * pf, 100 * (c4 - real) / real))
    # the test file per conversation, as the importer totals it
    rs = by_set["held:sharegpt_tools_zh"]
    k, per = 0, []
    for c in convs:
        part = rs[k:k + len(c)]
        k += len(c)
        han = any(r[2 + names.index("han")] for r in part)
        per.append((sum(r[0] for r in part), sum(r[1] for r in part), han))
    zr = sum(p[0] for p in per if p[2])
    ze = sum(p[1] for p in per if p[2])
    print("\nsharegpt_tools_zh.json, built-in weights, per conversation (tokens -> estimate): " +
          ", ".join("%d->%d%s" % (p[0], p[1], "*" if p[2] else "") for p in per))
    print("  conversations with Chinese (*): estimate / tokenizer = %.3f; whole file %.3f" %
          (ze / zr, sum(p[1] for p in per) / sum(p[0] for p in per)))
    if args.check:
        bad = [s for s in ("held:zh_CN", "held:zh_TW") if abs(res[s]) > 0.10]
        if abs(ze / zr - 1) > 0.10 or bad:
            print("tok_calibrate: FAIL: Chinese held-out text off by more than 10%%: test file "
                  "%.3f, %s" % (ze / zr, ", ".join("%s %+.1f%%" % (s, 100 * res[s]) for s in bad)))
            return 1
        print("tok_calibrate: check passed (Chinese held-out text within 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
