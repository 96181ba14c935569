"""Held-out sequences of the tokenized corpus (tokenize_corpus.py output), chosen deterministically.

Held-out documents of kind K are put in a fixed pseudo-random order (sha256 of "heldout-order"
and the document id; kernel Documentation/translations/ are skipped so that prose is English). A
sequence of n tokens is the first document in that order with at least n tokens, cut to its first
n tokens; the next sequence takes the next such document. With too few long documents,
consecutive shorter documents are joined with the end-of-text token (the source then lists every
document used).

part="calib" / "eval" splits the held-out documents once more, by a hash of their id (salt
"calib"; CALIB_FRACTION of the documents go to "calib", a quarter for the small "conv" kind so
that its held-out text gives one 16K calibration and one 32K evaluation sequence), so that sequences used to calibrate a
method (a stopping rule, a per-layer threshold) and sequences used to judge it share no text.
"""
import os

import numpy as np

from kvrec_common import die, doc_hash_unit, read_json


CALIB_FRACTION = {"conv": 0.25}
CALIB_FRACTION_DEFAULT = 1.0 / 3.0


def doc_part(doc_id, kind):
    """"calib" or "eval": the calibration / evaluation partition of held-out documents."""
    frac = CALIB_FRACTION.get(kind, CALIB_FRACTION_DEFAULT)
    return "calib" if doc_hash_unit(doc_id, "calib") < frac else "eval"


def heldout_sequences(tok_dir, kind, n_tokens, count, skip=0, part=None):
    idx = read_json(os.path.join(tok_dir, "heldout.json"))
    man = read_json(os.path.join(tok_dir, "tok-manifest.json"))
    data = np.fromfile(os.path.join(tok_dir, "heldout.bin"), dtype=man["dtype"])
    docs = [d for d in idx if d["kind"] == kind and "/translations/" not in d["id"]
            and (part is None or doc_part(d["id"], kind) == part)]
    docs.sort(key=lambda d: doc_hash_unit(d["id"], "heldout-order"))
    if not docs:
        die("%s: no held-out documents of kind '%s'%s" %
            (tok_dir, kind, "" if part is None else " in part '%s'" % part))
    out = []
    long_docs = [d for d in docs if d["n_tokens"] >= n_tokens]
    for d in long_docs[skip:skip + count]:
        toks = data[d["offset"]:d["offset"] + n_tokens].astype(np.int64)
        out.append({"name": "%s-%d" % (kind, len(out)), "kind": kind, "tokens": toks,
                    "source": d["id"] + ("" if part is None else " (part %s)" % part)})
    if len(out) < count:  # join short documents, in order
        buf, ids = [], []
        for d in docs:
            if d["n_tokens"] >= n_tokens:
                continue
            buf.append(data[d["offset"]:d["offset"] + d["n_tokens"]].astype(np.int64))
            buf.append(np.array([man["eot_id"]], dtype=np.int64))
            ids.append(d["id"])
            if sum(b.size for b in buf) >= n_tokens:
                out.append({"name": "%s-%d" % (kind, len(out)), "kind": kind,
                            "tokens": np.concatenate(buf)[:n_tokens],
                            "source": "joined: " + " + ".join(ids) +
                                      ("" if part is None else " (part %s)" % part)})
                buf, ids = [], []
                if len(out) == count:
                    break
    if len(out) < count:
        die("%s: only %d held-out sequences of %d tokens of kind '%s'%s" %
            (tok_dir, len(out), n_tokens, kind, "" if part is None else " in part '%s'" % part))
    return out
