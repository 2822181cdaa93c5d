#!/usr/bin/env python3
"""sort_records.py: a small data-processing job for Lego's main demo and tests.

Builds N records (a dict per record: id, name, score, tags), sorts them by (score, name), groups them by
tag, and prints a digest of the result. Its memory grows with N (about 1 KB per record), so N=200000 needs
roughly 200 MB. The output is the same wherever it runs: under `lego run` it must match a local run.

usage: sort_records.py [N]
"""
import hashlib
import sys


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    records = []
    x = 12345
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        records.append({
            "id": i,
            "name": "user-%08x" % (x >> 32),
            "score": (x >> 20) % 100000,
            "tags": ["t%d" % ((x >> s) % 37) for s in (3, 11, 19)],
            "payload": "%x" % x * 24,
        })
    records.sort(key=lambda r: (r["score"], r["name"]))
    groups = {}
    for r in records:
        for t in r["tags"]:
            groups.setdefault(t, []).append(r["id"])
    h = hashlib.sha256()
    for r in records:
        h.update(b"%d:%d;" % (r["id"], r["score"]))
    for t in sorted(groups):
        h.update(("%s=%d;" % (t, len(groups[t]))).encode())
    print("sort_records: %d records, %d tag groups, top score %d, digest %s" %
          (n, len(groups), records[-1]["score"], h.hexdigest()[:32]))


if __name__ == "__main__":
    main()
