#!/usr/bin/env python3
"""Step 1 of the recording pipeline: a corpus of real English text and C code from Debian packages.

  corpus.py fetch --cache DIR
      apt-get download the packages below into DIR/debs (needs Debian's archive; run it on a
      machine with network, not on the GPU machine).
  corpus.py build --cache DIR --out corpus.jsonl.xz --manifest corpus-manifest.json
      extracts the .deb files (dpkg-deb -x; the kernel tarball is streamed), turns each source
      file into one document (HTML pages to plain text), assigns a kind ("prose" or "code"), splits
      documents into train and held-out by a hash of their id (kvrec_common.doc_split) and writes
      one xz-compressed JSON line per document plus a manifest (package versions, .deb sha256,
      documents and bytes per kind and split).

Only the standard library and dpkg-deb are needed. The output is deterministic for the same .deb
files (documents sorted by id; xz preset fixed).
"""
import argparse
import glob
import hashlib
import html.parser
import json
import lzma
import os
import re
import subprocess
import sys
import tarfile
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvrec_common import die, doc_hash_unit, doc_split, log, utc_now, write_json  # noqa: E402

# Debian bookworm packages (the versions actually used are read from the .deb files and written
# to the manifest).
PACKAGES = ["linux-source-6.1", "python3.11-doc", "perl-doc", "postgresql-doc-15",
            "debian-handbook", "debian-faq"]

# Conversation-like text ("conv"): the question-and-answer documents of these packages (Perl's
# perlfaq1-9, Python's FAQ, the Debian FAQ), rewritten as multi-turn chats -- a user turn per
# question, an assistant turn per answer, CONV_TURNS question/answer pairs per conversation.
# They are not also counted as prose. Conversations are held out at a higher rate (1 in
# CONV_HELDOUT_MOD) than other documents, so that long held-out conversation sequences exist.
CONV_TURNS = 8
CONV_HELDOUT_MOD = 4

# Kernel C code: whole subsystems, not the generated GPU register headers that dominate drivers/.
KERNEL_C_DIRS = ["kernel", "mm", "fs", "net", "lib", "block", "ipc", "init", "crypto", "security",
                 "include/linux", "drivers/base", "drivers/pci", "drivers/usb", "drivers/tty",
                 "drivers/input", "drivers/md", "drivers/block", "drivers/char", "drivers/acpi"]
MAX_FILE_BYTES = 1 << 20   # larger source files are generated tables, not code people write
MIN_DOC_BYTES = 256


class _HtmlText(html.parser.HTMLParser):
    """HTML to plain text: drops script/style/navigation, keeps <pre> verbatim, puts block
    elements on their own lines."""
    BLOCK = {"p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5",
             "h6", "tr", "table", "pre", "blockquote", "section", "title", "hr"}
    SKIP = {"script", "style", "head", "nav"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.pre = [], 0
        self.skip_tag, self.skip_depth = None, 0

    def handle_starttag(self, tag, attrs):
        if self.skip_tag:
            if tag == self.skip_tag:
                self.skip_depth += 1
            return
        cls = dict(attrs).get("class") or ""
        if tag in self.SKIP or (tag == "div" and ("navheader" in cls or "navfooter" in cls)):
            self.skip_tag, self.skip_depth = tag, 1
            return
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if self.skip_tag:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
            return
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self.skip_tag:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self):
        t = "".join(self.out)
        t = re.sub(r"[ \t]+\n", "\n", t)
        t = re.sub(r"\n{3,}", "\n\n", t)
        return t.strip() + "\n"


def html_to_text(raw):
    p = _HtmlText()
    p.feed(raw)
    p.close()
    return p.text()


def deb_field(deb, field):
    out = subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True)
    if out.returncode != 0:
        die("%s: dpkg-deb -f failed: %s" % (deb, out.stderr.strip()))
    return out.stdout.strip()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_deb(cache, pkg):
    hits = sorted(glob.glob(os.path.join(cache, "debs", pkg + "_*.deb")))
    if not hits:
        die("%s/debs: no %s_*.deb (run corpus.py fetch --cache %s)" % (cache, pkg, cache))
    if len(hits) > 1:
        die("%s/debs: several .deb files for %s: %s" % (cache, pkg, ", ".join(hits)))
    return hits[0]


def cmd_fetch(args):
    d = os.path.join(args.cache, "debs")
    os.makedirs(d, exist_ok=True)
    log("apt-get download %s into %s" % (" ".join(PACKAGES), d))
    r = subprocess.run(["apt-get", "download"] + PACKAGES, cwd=d)
    if r.returncode != 0:
        die("apt-get download failed (exit %d); run 'apt-get update' first?" % r.returncode)
    for p in PACKAGES:
        log("%s: %s" % (p, os.path.basename(find_deb(args.cache, p))))


def extract(cache, deb):
    dest = os.path.join(cache, "extract", os.path.basename(deb)[:-4])
    if not os.path.isdir(dest):
        tmp = dest + ".tmp"
        subprocess.run(["rm", "-rf", tmp], check=True)
        os.makedirs(tmp)
        r = subprocess.run(["dpkg-deb", "-x", deb, tmp])
        if r.returncode != 0:
            die("%s: dpkg-deb -x failed" % deb)
        os.replace(tmp, dest)
    return dest


def decode(raw, where):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def docs_from_tree(pkg, root, rel_glob, kind, convert=None):
    for path in sorted(glob.glob(os.path.join(root, rel_glob), recursive=True)):
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_FILE_BYTES:
            continue
        with open(path, "rb") as f:
            text = decode(f.read(), path)
        if convert:
            text = convert(text)
        rel = os.path.relpath(path, root)
        yield {"id": "%s:%s" % (pkg, rel), "pkg": pkg, "kind": kind, "text": text}


def docs_from_kernel(pkg, root):
    tars = glob.glob(os.path.join(root, "usr/src/linux-source-*.tar.xz"))
    if len(tars) != 1:
        die("%s: expected one usr/src/linux-source-*.tar.xz, found %d" % (root, len(tars)))
    log("streaming %s" % tars[0])
    with tarfile.open(tars[0], "r|xz") as tf:
        for m in tf:
            if not m.isfile() or m.size > MAX_FILE_BYTES:
                continue
            parts = m.name.split("/", 1)
            if len(parts) != 2:
                continue
            rel = parts[1]
            if rel.startswith("Documentation/") and rel.endswith((".rst", ".txt")):
                kind = "prose"
            elif rel.endswith((".c", ".h")) and any(rel.startswith(d + "/")
                                                    for d in KERNEL_C_DIRS):
                kind = "code"
            else:
                continue
            text = decode(tf.extractfile(m).read(), m.name)
            yield {"id": "%s:%s" % (pkg, rel), "pkg": pkg, "kind": kind, "text": text}


_POD_CODE = re.compile(r"[A-Z]<<+\s+(.*?)\s+>>+|[A-Z]<([^<>]*)>")


def pod_plain(text):
    """POD inline markup to plain text (C<x>, L<x>, I<x>, C<< x >> -> x; L<text|link> -> text)."""
    for _ in range(3):
        text = _POD_CODE.sub(lambda m: (m.group(1) or m.group(2) or "").split("|")[0], text)
    return text


def qa_from_pod(text):
    """(question, answer) pairs of a perlfaq POD file: each '=head2' heading is a question."""
    pairs, q, buf = [], None, []
    for line in text.split("\n"):
        if line.startswith("=head2 "):
            if q and buf:
                pairs.append((q, "\n".join(buf).strip()))
            q, buf = pod_plain(line[7:].strip()), []
        elif line.startswith("=head1") or line.startswith("=cut"):
            if q and buf:
                pairs.append((q, "\n".join(buf).strip()))
            q, buf = None, []
        elif q is not None and not line.startswith("=") :
            buf.append(pod_plain(line))
    if q and buf:
        pairs.append((q, "\n".join(buf).strip()))
    return pairs


def qa_from_rst(text):
    """(question, answer) pairs of a Python FAQ reST file: a section title ending in '?'
    (underlined with '-' or '=') is a question; its section body is the answer."""
    lines = text.split("\n")
    heads = [i for i in range(len(lines) - 1)
             if lines[i].strip() and re.fullmatch(r"([-=~^*])\1{2,}", lines[i + 1].strip())
             and len(lines[i + 1].strip()) >= len(lines[i].strip())]
    pairs = []
    for k, i in enumerate(heads):
        end = heads[k + 1] if k + 1 < len(heads) else len(lines)
        q = lines[i].strip()
        a = "\n".join(lines[i + 2:end]).strip()
        if q.endswith("?") and a:
            pairs.append((q, a))
    return pairs


def qa_from_debian_faq(text):
    """(question, answer) pairs of the Debian FAQ's plain-text edition: a numbered heading
    'N.M. Question?' (possibly wrapped) at column 0 after the table of contents."""
    lines = text.replace("\u00a0", " ").split("\n")
    pat = re.compile(r"^(\d+\.\d+(?:\.\d+)*)\. (\S.*)$")
    heads = []
    for i, line in enumerate(lines):
        m = pat.match(line)
        if m:
            q, j = m.group(2), i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].startswith(" ") \
                    and not q.rstrip().endswith(("?", ".")):
                q += " " + lines[j].strip()
                j += 1
            heads.append((i, j, q.strip()))
    pairs = []
    for k, (i, j, q) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(lines)
        a = textwrap.dedent("\n".join(lines[j:end])).strip()
        if q.endswith("?") and len(a) > 40:
            pairs.append((q, a))
    return pairs


def conversations(pkg, rel, pairs):
    """Multi-turn chat documents from (question, answer) pairs, CONV_TURNS pairs each."""
    for c in range(0, len(pairs), CONV_TURNS):
        turns = ["User: %s\n\nAssistant: %s\n" % (q, a) for q, a in pairs[c:c + CONV_TURNS]]
        yield {"id": "%s:%s#c%d" % (pkg, rel, c // CONV_TURNS), "pkg": pkg, "kind": "conv",
               "text": "\n".join(turns)}


def docs_conv(pkg, root):
    if pkg == "perl-doc":
        files, parse = glob.glob(os.path.join(root, "usr/share/perl/*/pod/perlfaq[1-9].pod")), \
            qa_from_pod
    elif pkg == "python3.11-doc":
        files, parse = glob.glob(os.path.join(
            root, "usr/share/doc/python3.11/html/_sources/faq/*.rst.txt")), qa_from_rst
    elif pkg == "debian-faq":
        files, parse = glob.glob(os.path.join(root, "usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")), \
            qa_from_debian_faq
    else:
        return
    import gzip
    for path in sorted(files):
        raw = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
        rel = os.path.relpath(path, root)
        yield from conversations(pkg, rel, parse(decode(raw, path).replace("\r\n", "\n")))


def is_conv_source(doc_id):
    """Documents turned into conversations and therefore not kept as prose."""
    return bool(re.search(r"/perlfaq[1-9]\.pod$|/_sources/faq/[^/]*\.rst\.txt$", doc_id))


def cmd_build(args):
    debs, docs = {}, []
    for pkg in PACKAGES:
        deb = find_deb(args.cache, pkg)
        debs[pkg] = {"file": os.path.basename(deb), "version": deb_field(deb, "Version"),
                     "sha256": sha256_file(deb), "bytes": os.path.getsize(deb)}
        root = extract(args.cache, deb)
        log("%s %s extracted" % (pkg, debs[pkg]["version"]))
        if pkg == "linux-source-6.1":
            gen = docs_from_kernel(pkg, root)
        elif pkg == "python3.11-doc":
            gen = docs_from_tree(pkg, root, "usr/share/doc/python3.11/html/_sources/**/*.txt",
                                 "prose")
        elif pkg == "perl-doc":
            gen = docs_from_tree(pkg, root, "usr/share/perl/*/pod/*.pod", "prose")
        elif pkg == "postgresql-doc-15":
            gen = docs_from_tree(pkg, root, "usr/share/doc/postgresql-doc-15/html/*.html",
                                 "prose", html_to_text)
        elif pkg == "debian-handbook":
            gen = docs_from_tree(pkg, root, "usr/share/doc/debian-handbook/html/en-US/*.html",
                                 "prose", html_to_text)
        elif pkg == "debian-faq":
            gen = iter(())
        else:
            die("no extraction rule for %s" % pkg)
        n0 = len(docs)
        for d in list(gen) + list(docs_conv(pkg, root)):
            if d["kind"] == "prose" and is_conv_source(d["id"]):
                continue
            d["text"] = d["text"].replace("\r\n", "\n").replace("\x00", "")
            if len(d["text"].encode("utf-8")) >= MIN_DOC_BYTES:
                docs.append(d)
        log("%s: %d documents" % (pkg, len(docs) - n0))

    # Deterministic size caps per kind: keep a document when its hash unit is below cap/total.
    caps = {"prose": args.max_prose_mb * 1e6, "code": args.max_code_mb * 1e6}
    stats = {}
    kept = []
    for kind in ("prose", "code"):
        total = sum(len(d["text"].encode("utf-8")) for d in docs if d["kind"] == kind)
        frac = min(1.0, caps[kind] / total) if total else 1.0
        for d in docs:
            if d["kind"] == kind and (frac >= 1.0 or doc_hash_unit(d["id"], "cap") < frac):
                kept.append(d)
        stats["%s_source_bytes" % kind] = total
        stats["%s_keep_fraction" % kind] = frac
    kept.extend(d for d in docs if d["kind"] == "conv")
    stats["conv_source_bytes"] = sum(len(d["text"].encode("utf-8")) for d in docs
                                     if d["kind"] == "conv")
    kept.sort(key=lambda d: d["id"])
    for d in kept:
        d["split"] = doc_split(d["id"], CONV_HELDOUT_MOD if d["kind"] == "conv" else 32)

    counts = {}
    tmp = args.out + ".tmp.%d" % os.getpid()
    with lzma.open(tmp, "wt", encoding="utf-8", preset=6) as f:
        for d in kept:
            f.write(json.dumps({"id": d["id"], "pkg": d["pkg"], "kind": d["kind"],
                                "split": d["split"], "text": d["text"]},
                               ensure_ascii=False, sort_keys=True))
            f.write("\n")
            key = "%s/%s/%s" % (d["pkg"], d["kind"], d["split"])
            c = counts.setdefault(key, {"docs": 0, "bytes": 0})
            c["docs"] += 1
            c["bytes"] += len(d["text"].encode("utf-8"))
    os.replace(tmp, args.out)
    manifest = {"created": utc_now(), "archive": os.path.basename(args.out),
                "archive_bytes": os.path.getsize(args.out), "archive_sha256": sha256_file(args.out),
                "packages": debs, "kernel_c_dirs": KERNEL_C_DIRS,
                "split_rule": "heldout iff int(sha256(id)[:4 bytes]) %% 32 == 0 (%% %d for kind conv)"
                      % CONV_HELDOUT_MOD,
                "caps_mb": {"prose": args.max_prose_mb, "code": args.max_code_mb},
                "stats": stats, "counts": counts,
                "distribution": "Debian bookworm (each package's copyright file applies)"}
    write_json(args.manifest, manifest)
    log("wrote %s (%.1f MiB, %d documents) and %s" %
        (args.out, os.path.getsize(args.out) / 1048576.0, len(kept), args.manifest))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="apt-get download the packages")
    f.add_argument("--cache", required=True)
    b = sub.add_parser("build", help="extract and write corpus.jsonl.xz + manifest")
    b.add_argument("--cache", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--manifest", required=True)
    b.add_argument("--max-prose-mb", type=float, default=80.0)
    b.add_argument("--max-code-mb", type=float, default=120.0)
    args = ap.parse_args()
    {"fetch": cmd_fetch, "build": cmd_build}[args.cmd](args)


if __name__ == "__main__":
    main()
