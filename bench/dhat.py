#!/usr/bin/env python3
"""The heap of a program at its peak, by allocation site, from the JSON that
`valgrind --tool=dhat` writes.

    python3 bench/dhat.py bench/out/profile-RUN/dhat.out.PID [--top 20]

One line per allocation site, largest first: bytes and blocks live at the
peak (t-gmax), bytes per block, and the innermost frames of postern's own
code or of the library that allocated (tokio, tracing…), the standard
library's allocation plumbing left out. Python standard library only.
"""

import argparse
import json
import re

# Frames that only say "an allocation happened".
PLUMBING = re.compile(
    r"vgpreload|/alloc/src/|/raw_vec/|library/std/src/sys/alloc|library/core/src/"
    r"|UnknownInlinedFun|^\?\?\?"
)


def frame(text):
    """`0x1234: name (file:line)` → `name (file:line)`, shortened."""
    text = re.sub(r"^0x[0-9A-Fa-f]+: ", "", text)
    return text if len(text) <= 140 else text[:137] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--frames", type=int, default=3)
    args = ap.parse_args()
    with open(args.file) as f:
        d = json.load(f)
    ftbl, pps = d["ftbl"], d["pps"]
    total = sum(p.get("gb", 0) for p in pps)
    blocks = sum(p.get("gbk", 0) for p in pps)
    print("heap at its peak: %d bytes in %d blocks" % (total, blocks))
    for p in sorted(pps, key=lambda p: -p.get("gb", 0))[: args.top]:
        gb, gbk = p.get("gb", 0), p.get("gbk", 0)
        if not gb:
            break
        names = [frame(ftbl[i]) for i in p["fs"]]
        own = [n for n in names if not PLUMBING.search(n)][: args.frames]
        print("%10d B %7d blocks %6d B each  %s" % (gb, gbk, gb // max(gbk, 1), " <- ".join(own)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
