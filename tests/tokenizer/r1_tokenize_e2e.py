#!/usr/bin/env python3
"""r1-tokenize end to end: its output equals the Hugging Face goldens (the npm Qwen tokenizer,
and the DeepSeek-R1-Distill-Llama tokenizer that --write-demo-dir makes from the npm Llama 3.1
one), --decode round-trips, bad lines give 'null', an error line naming the line number and
exit status 1, bad flags 2.

  r1_tokenize_e2e.py PATH_TO_r1-tokenize SOURCE_DIR
"""
import json
import os
import subprocess
import sys
import tempfile


def lines_of(text):
    # Not str.splitlines(): JSON output may hold raw U+2028 or U+0085, which it splits on.
    parts = text.split("\n")
    return parts[:-1] if parts and parts[-1] == "" else parts


def run(binary, args, stdin):
    p = subprocess.run([binary] + args, input=stdin.encode("utf-8"), capture_output=True,
                       timeout=120)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


def check_goldens(binary, tok_file, strings, gold, check, label):
    """Encodes every string with r1-tokenize and decodes the goldens' ids (through the
    directory, which works as --tokenizer too): both must equal Hugging Face's."""
    lines = "".join(json.dumps(s["text"]) + "\n" for s in strings)
    rc, out, err = run(binary, ["--tokenizer", tok_file], lines)
    check(rc == 0, "%s: encode exit status %d: %s" % (label, rc, err))
    got = [json.loads(l) for l in lines_of(out)]
    check(len(got) == len(strings), "%s: one output line per input line" % label)
    for s, ids, want in zip(strings, got, gold["encodings"]):
        check(ids == want, "%s: encoding of %s" % (label, s["name"]))
    rc, out, err = run(binary, ["--tokenizer", os.path.dirname(tok_file), "--decode"],
                       "".join(json.dumps(ids) + "\n" for ids in gold["encodings"]))
    check(rc == 0, "%s: decode exit status %d: %s" % (label, rc, err))
    texts = [json.loads(l) for l in lines_of(out)]
    for s, t, d in zip(strings, texts, gold["decoded"]):
        check(t == (s["text"] if d is None else d), "%s: decoding of %s" % (label, s["name"]))


def main():
    binary, src = sys.argv[1], sys.argv[2]
    tok = os.path.join(src, ".cache", "tokenizer", "tokenizer.json")
    fx = os.path.join(src, "tests", "fixtures", "tokenizer")
    strings = json.load(open(os.path.join(fx, "strings.json")))["strings"]
    gold = json.load(open(os.path.join(fx, "goldens_qwen.json")))
    failures = 0

    def check(cond, what):
        nonlocal failures
        if not cond:
            failures += 1
            print("FAIL:", what)

    check_goldens(binary, tok, strings, gold, check, "qwen")

    # The DeepSeek-R1-Distill-Llama tokenizer, as --write-demo-dir makes it from the npm file.
    llama_gold = os.path.join(fx, "goldens_llama_distill.json")
    if not os.path.exists(llama_gold):
        check(False, "%s is missing: make it on the GPU machine with `bash "
              "tests/fixtures/make_llama_fixtures.sh OUT`, then `tar -xzf "
              "OUT/llama_fixtures.tar.gz` in the repository root" % llama_gold)
    else:
        with tempfile.TemporaryDirectory() as d:
            llama_tok = os.path.join(src, ".cache", "tokenizer", "llama3_1", "tokenizer.json")
            rc, out, err = run(binary, ["--tokenizer", llama_tok, "--write-demo-dir", d], "")
            check(rc == 0, "--write-demo-dir from the Llama tokenizer: %d %s" % (rc, err))
            more = json.load(open(os.path.join(fx, "strings_llama.json")))["strings"]
            check_goldens(binary, os.path.join(d, "tokenizer.json"), strings + more,
                          json.load(open(llama_gold)), check, "llama_distill")

    # Bad lines: null on stdout, the line number on stderr, exit status 1, the rest still done.
    rc, out, err = run(binary, ["--tokenizer", tok], '"ok"\nnot json\n[1,2]\n"fine"\n')
    check(rc == 1, "bad lines exit with 1, got %d" % rc)
    outs = lines_of(out)
    check(len(outs) == 4 and outs[1] == "null" and outs[2] == "null", "null for bad lines: %r" % outs)
    check(len(outs) == 4 and outs[3] != "null", "later lines go on")
    check("line 2" in err and "line 3" in err, "stderr names the lines: %r" % err)
    rc, out, err = run(binary, ["--tokenizer", tok, "--decode"], "[9707, 99999999]\n\"x\"\n")
    check(rc == 1 and "line 1" in err and "99999999" in err and "line 2" in err,
          "decode errors: %d %r" % (rc, err))

    # Flags.
    rc, out, err = run(binary, [], "")
    check(rc == 2 and "--tokenizer" in err, "missing --tokenizer: %d %r" % (rc, err))
    rc, out, err = run(binary, ["--tokenizer", "/nonexistent.json"], "")
    check(rc == 2 and "nonexistent" in err and len(lines_of(err)) == 1,
          "missing file: %d %r" % (rc, err))
    rc, out, err = run(binary, ["--help"], "")
    check(rc == 0 and "--decode" in out and "null" in out, "--help")
    rc, out, err = run(binary, ["--bogus"], "")
    check(rc == 2, "unknown flag")
    rc, out, err = run(binary, ["--tokenizer", tok], "")
    check(rc == 0 and out == "", "empty input")

    print("r1_tokenize_e2e: %s" % ("all checks passed" if failures == 0 else "%d checks failed" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
