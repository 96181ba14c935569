"""The C tokenizer reads the byte-level BPE the recording pipeline trains: a tokenizer.json made
as traces/record/tokenize_corpus.py makes one (Hugging Face `tokenizers`, ByteLevel
pre-tokeniser without prefix space), loaded by `kvtrace tokenize --tokenizer`, gives the same ids
as `tokenizers` itself on English, code, Chinese and mixed text, and on invalid UTF-8 the same
count through its byte pieces. Skips without the `tokenizers` and numpy packages or the kvtrace binary
(KVLAB_KVTRACE, set by CTest)."""
import argparse
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "traces", "record"))
KVTRACE = os.environ.get("KVLAB_KVTRACE", os.path.join(REPO, "build", "bin", "kvtrace"))

try:
    import tokenizers  # noqa: F401
    from tokenize_corpus import build_tokenizer  # imports numpy
    HAVE = os.access(KVTRACE, os.X_OK)
except ImportError:
    HAVE = False

TEXTS = {
    "english": "The quick brown fox can't jump over 1,234,567 lazy dogs!!  It's 3.14...\n\n\tTabs",
    "chinese": "明天北京晴转多云，气温12到23摄氏度，北风三级，很适合去颐和园散步。",
    "mixed": "café naïve — «quotes» 😀 日本語のテキスト 한국어 Привет, мир! x=y+2;\r\n",
}


@unittest.skipUnless(HAVE, "needs the tokenizers package and a built kvtrace")
class TokenizerJson(unittest.TestCase):
    def test_same_ids_as_tokenizers(self):
        from tokenizers import Tokenizer
        train = [open(os.path.join(REPO, "README.md"), encoding="utf-8").read(),
                 open(os.path.join(REPO, "traces", "tokenizer.c"), encoding="utf-8").read(),
                 open(os.path.join(REPO, "tests", "traces", "data", "sharegpt_tools_zh.json"),
                      encoding="utf-8").read()]
        args = argparse.Namespace(tokenizer=None, gpt2=None, train_bpe=700)
        tok, _ = build_tokenizer(args, train)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "tokenizer.json")
            tok.save(path)
            tok = Tokenizer.from_file(path)
            texts = dict(TEXTS)
            texts["readme"] = train[0]
            texts["code"] = train[1]
            for name, text in texts.items():
                f = os.path.join(d, name + ".txt")
                with open(f, "w", encoding="utf-8", newline="") as o:
                    o.write(text)
                out = subprocess.run([KVTRACE, "tokenize", "--tokenizer", d, "--ids", f],
                                     check=True, capture_output=True, text=True).stdout
                ids = [int(x) for x in out.split("\n")[1].split()]
                want = tok.encode(text).ids
                self.assertEqual(ids, want, name)
            # invalid UTF-8: tokenizers cannot take it, the C code keeps every byte a piece
            f = os.path.join(d, "bad.txt")
            with open(f, "wb") as o:
                o.write(b"ab\xff\xfecd")
            out = subprocess.run([KVTRACE, "tokenize", "--tokenizer", path, f], check=True,
                                 capture_output=True, text=True).stdout
            # pieces "ab", 0xFF, 0xFE, "cd" (tests/traces/test_tokenizer.c), a byte token each
            want = len(tok.encode("ab").ids) + 2 + len(tok.encode("cd").ids)
            self.assertIn(", %d tokens," % want, out)

if __name__ == "__main__":
    unittest.main()
