#!/usr/bin/env python3
"""PSA stopping-rule study on recorded Q/K/V (numpy + h5py; the C library is the product, this is
the bench on which its estimators were chosen -- docs/psa-estimators.md reports the results).

For every recorded query (layer, position) and KV head it precomputes, per 16-token block b and
query head h, the exact block softmax numerator S[h,b] = sum_{t in b} exp(s_t - m_h) and the
weighted value sum O[h,b] = sum_t exp(s_t - m_h) v_t. Any block set R then has covered mass
sum_R S / sum_all S and output sum_R O / sum_R S, so every ranking / stop rule / budget is judged
exactly (as the C reference would compute it) without re-running attention.

  estimators.py FILE.h5 [FILE.h5 ...] [--layers 0,1] [--max-pos N] --out study.npz
      precompute and cache the per-case arrays the rules need;
  estimators.py --load study.npz --report
      tokens, mean / p90 error and calibration of each rule; matched-error ratios vs top-k.

Shapes: q [H, D], K/V [T, G, D]; query head h uses KV head h // (H // G); scores q.k / sqrt(D).
"""
import argparse
import math
import sys

import numpy as np

B = 16  # tokens per block


def load_cases(paths, layers=None, max_pos=None):
    import h5py
    cases = []
    for path in paths:
        with h5py.File(path, "r") as f:
            H, G, D = (int(f.attrs[k]) for k in ("n_heads", "n_kv_heads", "head_dim"))
            for sname in sorted(k for k in f if k.startswith("seq_")):
                sg = f[sname]
                kind = sg.attrs["text_kind"]
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                for lname in sorted(k for k in sg if k.startswith("layer_")):
                    lay = int(sg[lname].attrs["layer"])
                    if layers is not None and lay not in layers:
                        continue
                    g = sg[lname]
                    K = g["K"][()].astype(np.float32)
                    V = g["V"][()].astype(np.float32)
                    Q = g["Q"][()].astype(np.float32)
                    P = g["positions"][()]
                    idx = range(len(P)) if max_pos is None else \
                        np.linspace(0, len(P) - 1, min(max_pos, len(P))).round().astype(int)
                    for i in idx:
                        cases.append(case_arrays(Q[i], K, V, int(P[i]), H, G, D,
                                                 (path, sname, lay, kind, int(P[i]))))
                    print("%s %s layer %d: %d cases" % (path, sname, lay, len(idx)),
                          file=sys.stderr)
    return cases


def case_arrays(q, K, V, pos, H, G, D, tag):
    """Per-block exact sums and metadata-based estimates for one query."""
    T = pos + 1
    nb = (T + B - 1) // B
    pad = nb * B - T
    gs = H // G
    scale = 1.0 / math.sqrt(D)
    Kq = np.pad(K[:T], ((0, pad), (0, 0), (0, 0)))
    Vq = np.pad(V[:T], ((0, pad), (0, 0), (0, 0)))
    valid = np.ones(nb * B, bool)
    valid[T:] = False
    qg = q.reshape(G, gs, D)
    s = np.einsum("gjd,tgd->gjt", qg, Kq).reshape(H, nb * B) * scale
    s[:, ~valid] = -np.inf
    m = s.max(1, keepdims=True)
    e = np.exp(s - m)  # [H, T']
    S = e.reshape(H, nb, B).sum(2)
    ev = e.reshape(G, gs, nb, B)
    O = np.einsum("gjbt,btgd->gjbd", ev, Vq.reshape(nb, B, G, D)).reshape(H, nb, D)
    dense = O.sum(1) / S.sum(1)[:, None]
    ntok = np.full(nb, B, np.float64)
    ntok[-1] = B - pad
    Kb = Kq.reshape(nb, B, G, D)
    vb = valid.reshape(nb, B)
    cnt = vb.sum(1)[:, None, None]
    mean = (Kb * vb[:, :, None, None]).sum(1) / cnt            # [nb, G, D]
    var = ((Kb - mean[:, None]) ** 2 * vb[:, :, None, None]).sum(1) / cnt
    big = np.where(vb[:, :, None, None], Kb, np.nan)
    kmin, kmax = np.nanmin(big, 1), np.nanmax(big, 1)
    hg = np.arange(H) // gs
    sm = np.einsum("hd,bhd->hb", q, mean[:, hg]) * scale          # q . mean key
    q2 = (q * q)[:, None, :]
    lv = 0.5 * scale * scale * (q2 * var[:, hg].transpose(1, 0, 2)).sum(2)   # log-normal term
    quest = np.maximum(q[:, None, :] * kmin[:, hg].transpose(1, 0, 2),
                       q[:, None, :] * kmax[:, hg].transpose(1, 0, 2)).sum(2) * scale
    ref = m[:, 0]
    return {"tag": tag, "S": S, "O": O.astype(np.float32), "dense": dense, "ntok": ntok,
            "sm": sm - ref[:, None], "lv": lv, "quest": quest - ref[:, None], "H": H, "G": G}


# ---- evaluating a block set -------------------------------------------------------------------

def judge(c, read):
    """read: bool [G, nb] -> per query head (tokens read by its KV head, mass, rel L2 error)."""
    H, G = c["H"], c["G"]
    gs = H // G
    rh = np.repeat(read, gs, axis=0)  # [H, nb]
    S, O = c["S"], c["O"]
    cov = (S * rh).sum(1)
    mass = cov / S.sum(1)
    out = (O * rh[:, :, None]).sum(1) / np.maximum(cov, 1e-300)[:, None]
    err = np.linalg.norm(out - c["dense"], axis=1) / np.linalg.norm(c["dense"], axis=1)
    tok = (read * c["ntok"][None]).sum(1)
    return np.repeat(tok, gs), mass, err


def forced(nb, sink=1, recent=1):
    f = np.zeros(nb, bool)
    f[:min(sink, nb)] = True
    if recent:
        f[max(0, nb - recent):] = True
    return f


def topk(c, k_tokens, rank="quest"):
    H, G = c["H"], c["G"]
    gs = H // G
    nb = c["S"].shape[1]
    sc = c["quest"] if rank == "quest" else c["sm"]
    gsc = sc.reshape(G, gs, nb).max(1)
    f = forced(nb)
    read = np.tile(f, (G, 1))
    nsel = max(0, k_tokens // B - int(f.sum()))
    for g in range(G):
        o = np.argsort(-np.where(f, -np.inf, gsc[g]), kind="stable")
        read[g, o[:nsel]] = True
    return read


def est_mass(c, est):
    """Estimated block numerators [H, nb] (relative to the true row maximum, which cancels)."""
    n = c["ntok"][None]
    if est == "mean":
        return n * np.exp(c["sm"])
    if est == "lognormal":
        return n * np.exp(c["sm"] + c["lv"])
    if est == "bound":
        return n * np.exp(c["quest"])
    raise ValueError(est)


def psa(c, eps, est="mean", rank="mean", group=4, c_mult=1.0, min_ranked=0, per_head=False,
        selfcal=False, truestop=False, last_ratio=False):
    """PSA block set per KV head.
    rank: order by the estimate ("mean": the est estimator's block mass) or the Quest bound;
    per_head: each query head follows its own order, the KV head reads the union (a head stops
      on the blocks read for any head of its group); else one order per KV head by the group's
      summed normalised estimate;
    stop when, for every head of the group, A >= eps * (A + c_mult * U), A the exact mass read,
      U the estimated unvisited mass; min_ranked ranked groups are read before any stop test;
    selfcal: U is scaled by max(1, true / estimated mass of the ranked blocks read so far).
    Returns read [G, nb] and iterations [G] (forced blocks are iteration 1)."""
    H, G = c["H"], c["G"]
    gs = H // G
    nb = c["S"].shape[1]
    E = est_mass(c, est)
    R = {"mean": E, "quest": np.exp(c["quest"]), "oracle": c["S"],
         "logn": est_mass(c, "lognormal"), "meankey": est_mass(c, "mean")}[rank]
    S = c["S"]
    if truestop:   # the stop test sees the true unvisited mass (isolates the ranking's cost)
        E = S
    f = forced(nb)
    fi = np.flatnonzero(f)
    read = np.tile(f, (G, 1))
    iters = np.zeros(G, int)
    for g in range(G):
        hs = np.arange(g * gs, (g + 1) * gs)
        Sf, Ef, Et = S[hs][:, fi].sum(1), E[hs][:, fi].sum(1), E[hs].sum(1)
        if not per_head:
            comb = (R[hs] / R[hs].sum(1, keepdims=True)).sum(0)
            o = np.argsort(-np.where(f, -np.inf, comb), kind="stable")[:nb - len(fi)]
            ng = (len(o) + group - 1) // group
            idx = np.minimum(np.arange(ng + 1) * group, len(o))
            cS = np.concatenate([np.zeros((gs, 1)), np.cumsum(S[hs][:, o], 1)], 1)[:, idx]
            cE = np.concatenate([np.zeros((gs, 1)), np.cumsum(E[hs][:, o], 1)], 1)[:, idx]
            A = Sf[:, None] + cS
            U = np.maximum(Et[:, None] - Ef[:, None] - cE, 0.0)
            if selfcal and last_ratio:   # ratio over the last group read only
                dS = np.diff(cS, axis=1, prepend=0.0)
                dE = np.diff(cE, axis=1, prepend=0.0)
                U = U * np.where(dE > 0, np.maximum(dS / np.maximum(dE, 1e-300), 1.0), 1.0)
            elif selfcal:
                U = U * np.where(cE > 0, np.maximum(cS / np.maximum(cE, 1e-300), 1.0), 1.0)
            ok = (A >= eps * (A + c_mult * U)).all(0)
            ok[:min_ranked] = False
            ok[-1] = True
            n = int(np.argmax(ok))
            read[g, o[:idx[n]]] = True
            iters[g] = n + 1
            continue
        orders = [np.argsort(-np.where(f, -np.inf, R[h]), kind="stable")[:nb - len(fi)]
                  for h in hs]
        rd = read[g]
        A, U = Sf.copy(), Et - Ef
        cs, ce = np.zeros(gs), np.zeros(gs)
        ptr = [0] * gs
        it, ranked = 1, 0

        def sat():
            Ux = U * (np.where(ce > 0, np.maximum(cs / np.maximum(ce, 1e-300), 1.0), 1.0)
                      if selfcal else 1.0)
            return A >= eps * (A + c_mult * np.maximum(Ux, 0.0))
        while True:
            st = sat()
            if (st.all() and ranked >= min_ranked) or rd.all():
                break
            for j in range(gs):
                if st[j] and ranked >= min_ranked:
                    continue
                added = 0
                while added < group and ptr[j] < len(orders[j]):
                    b = orders[j][ptr[j]]
                    ptr[j] += 1
                    if not rd[b]:
                        rd[b] = True
                        added += 1
                        A += S[hs, b]
                        U -= E[hs, b]
                        cs += S[hs, b]
                        ce += E[hs, b]
            ranked += 1
            it += 1
        iters[g] = it
    return read, iters


def oracle(c, eps, group=4):
    H, G = c["H"], c["G"]
    gs = H // G
    nb = c["S"].shape[1]
    S = c["S"]
    f = forced(nb)
    read = np.tile(f, (G, 1))
    for g in range(G):
        hs = list(range(g * gs, (g + 1) * gs))
        comb = sum(S[h] / S[h].sum() for h in hs)
        o = np.argsort(-np.where(f, -np.inf, comb), kind="stable")
        for i in range(0, nb, group):
            if all(S[h][read[g]].sum() >= eps * S[h].sum() for h in hs):
                break
            read[g, o[i:i + group]] = True
    return read


# ---- pooled summaries ---------------------------------------------------------------------------

def summarise(cases, fn):
    toks, errs, mass = [], [], []
    for c in cases:
        rd = fn(c)
        t, m, e = judge(c, rd[0] if isinstance(rd, tuple) else rd)
        toks.append(t)
        errs.append(e)
        mass.append(m)
    t, e, m = (np.concatenate(x) for x in (toks, errs, mass))
    e = np.maximum(e, 1e-7)  # exact (full-context) results: a floor for the log-log matching
    return {"tokens": t.mean(), "err_mean": e.mean(), "err_p90": np.quantile(e, 0.9),
            "mass": m, "err": e, "tok": t}


def matched(curve, err):
    """Tokens a method with the curve [(tokens, err)] needs for error err (log-log interp.)."""
    pts = sorted(curve)
    for (t0, e0), (t1, e1) in zip(pts, pts[1:]):
        if e0 >= err >= e1 and e0 > e1:
            a = (math.log(e0) - math.log(err)) / (math.log(e0) - math.log(e1))
            return math.exp(math.log(t0) + a * (math.log(t1) - math.log(t0)))
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--layers", default=None)
    ap.add_argument("--max-pos", type=int, default=None)
    args = ap.parse_args()
    layers = None if args.layers is None else {int(x) for x in args.layers.split(",")}
    cases = load_cases(args.files, layers, args.max_pos)
    report(cases)


EPS = (0.8, 0.9, 0.95, 0.98, 0.99)


def report(cases, rules=None, topk_print=True):
    tk = {}
    for rank in ("quest", "mean"):
        tk[rank] = []
        for k in (64, 128, 256, 512, 1024, 2048, 4096, 8192, 12288, 16384, 24576, 32768):
            r = summarise(cases, lambda c: topk(c, k, rank))
            tk[rank].append(r)
            if topk_print:
                print("topk-%s %5d: tokens %7.1f err mean %.4f p90 %.4f" %
                      (rank, k, r["tokens"], r["err_mean"], r["err_p90"]))
    best_mean = [(r["tokens"], r["err_mean"]) for rr in tk.values() for r in rr]
    best_p90 = [(r["tokens"], r["err_p90"]) for rr in tk.values() for r in rr]

    def envelope(pts):  # lower envelope: for each error, the fewest tokens
        pts = sorted(pts)
        out, best = [], float("inf")
        for t, e in pts:
            if e < best:
                out.append((t, e))
                best = e
        return out
    env_mean, env_p90 = envelope(best_mean), envelope(best_p90)
    rules = rules or {}
    for name, fn in rules.items():
        for eps in EPS:
            r = summarise(cases, lambda c: fn(c, eps))
            calib = (r["mass"] >= eps).mean()
            print("%-28s eps %.2f: tokens %7.1f err mean %.4f p90 %.4f calib %.3f  "
                  "ratio@mean %.2f ratio@p90 %.2f" %
                  (name, eps, r["tokens"], r["err_mean"], r["err_p90"], calib,
                   matched(env_mean, r["err_mean"]) / r["tokens"],
                   matched(env_p90, r["err_p90"]) / r["tokens"]))


if __name__ == "__main__":
    main()
