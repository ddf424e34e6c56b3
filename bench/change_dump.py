#!/usr/bin/env python3
"""A newer dump for the delta benchmark: a copy of a Posts.xml with a fraction of its posts
changed. Of the chosen rows, four in five get an edited Body (a word appended) and one in five
is dropped (a deleted post). Rows are one line each, as in the dumps mathrank-bench gen-dump
writes and Stack Exchange publishes. Prints what it changed as one JSON line."""

import argparse
import json
import random
import re


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = edited = dropped = 0
    body = re.compile(r'( Body="[^"]*?)(")')
    with open(args.dump, encoding="utf-8") as source, open(args.out, "w", encoding="utf-8") as out:
        for line in source:
            if "<row " not in line:
                out.write(line)
                continue
            rows += 1
            if rng.random() >= args.fraction:
                out.write(line)
            elif rng.random() < 0.2:
                dropped += 1
            else:
                changed, count = body.subn(r"\1 edited\2", line, count=1)
                edited += count
                out.write(changed)
    print(json.dumps({"rows": rows, "edited": edited, "dropped": dropped}))


if __name__ == "__main__":
    main()
