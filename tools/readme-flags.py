#!/usr/bin/env python3
"""Keeps README.md's flag reference equal to the programs' own --help.

  tools/readme-flags.py BIN_DIR [README]          rewrite the blocks from --help
  tools/readme-flags.py --check BIN_DIR [README]  exit 1 (with a diff) when they differ

A block is the text between `<!-- BEGIN FLAGS prog -->` and `<!-- END FLAGS prog -->`.
"""
import difflib
import re
import subprocess
import sys


def main():
    args = sys.argv[1:]
    check = bool(args) and args[0] == "--check"
    if check:
        args = args[1:]
    if not args:
        sys.exit(__doc__)
    bin_dir = args[0]
    readme = args[1] if len(args) > 1 else "README.md"
    text = open(readme, encoding="utf-8").read()
    pattern = re.compile(r"(<!-- BEGIN FLAGS (\S+) -->\n)(.*?)(<!-- END FLAGS \2 -->)", re.S)

    def block(m):
        prog = m.group(2)
        out = subprocess.run([f"{bin_dir}/{prog}", "--help"], capture_output=True, text=True,
                             check=True).stdout
        return m.group(1) + "```text\n" + out.rstrip("\n") + "\n```\n" + m.group(4)

    new = pattern.sub(block, text)
    if len(pattern.findall(text)) == 0:
        sys.exit(f"{readme}: no flag blocks found")
    if check:
        if new != text:
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       readme, readme + " (from --help)"))
            print(f"\n{readme} is out of date: run tools/readme-flags.py {bin_dir}", file=sys.stderr)
            sys.exit(1)
        print(f"{readme}: flag blocks match --help for",
              ", ".join(m.group(2) for m in pattern.finditer(text)))
    elif new != text:
        open(readme, "w", encoding="utf-8").write(new)


if __name__ == "__main__":
    main()
