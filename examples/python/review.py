"""A compliance review: list every message of a tenant matching a query, with
a progress line, into a CSV file, and save the raw messages of the hits as
.eml files for the reviewer.

    python examples/python/review.py DATA_DIR TENANT 'from:ceo@acme.example after:2024-01-01' out/

The passphrase is read from the AMA_PASSPHRASE environment variable. This is
a script over search and get, not the archive's export (audited, zip/mbox),
which comes with the lifecycle issue.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import ama


def review(archive: ama.Archive, tenant: str, query: str, out: Path) -> int:
    view = archive.tenant(tenant)
    out.mkdir(parents=True, exist_ok=True)
    results = view.search(query, sort="oldest")
    print(f"{results.total} messages match {query!r}", file=sys.stderr)
    with open(out / "hits.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "date", "from", "to", "subject", "size", "sha256"])
        for n, hit in enumerate(results, 1):
            writer.writerow(
                [
                    hit.id,
                    hit.date.isoformat(),
                    "; ".join(m.address for m in hit.from_),
                    "; ".join(m.address for m in hit.to),
                    hit.subject or "",
                    hit.size,
                    hit.sha256,
                ]
            )
            message = view.get(hit.id)
            (out / f"{hit.id}.eml").write_bytes(message.raw)
            if n % 100 == 0:
                print(f"  {n}/{results.total}", file=sys.stderr)
    return results.total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("data_dir", type=Path)
    p.add_argument("tenant")
    p.add_argument("query")
    p.add_argument("out", type=Path)
    args = p.parse_args()
    passphrase = os.environ.get("AMA_PASSPHRASE")
    if not passphrase:
        print("set AMA_PASSPHRASE", file=sys.stderr)
        return 2
    try:
        with ama.Archive.open(args.data_dir, passphrase=passphrase) as archive:
            review(archive, args.tenant, args.query, args.out)
    except ama.QueryError as e:
        print(f"bad query: {e}", file=sys.stderr)
        return 2
    except ama.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
