"""Messages per sender domain, for the auditor: a CSV on standard output,
standard library only.

    AMA_PASSPHRASE=... python examples/python/domain_report.py --data DIR --tenant acme [--query Q]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from typing import List, Optional

import ama


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--query", default="")
    args = p.parse_args(argv)
    counts: Counter[str] = Counter()
    with ama.Archive.open(args.data, passphrase=os.environ["AMA_PASSPHRASE"]) as archive:
        for hit in archive.tenant(args.tenant).search(args.query):
            domains = {m.address.rpartition("@")[2].lower() for m in hit.from_} or {"(none)"}
            counts.update(domains)
    out = csv.writer(sys.stdout)
    out.writerow(["domain", "messages"])
    for domain, n in counts.most_common():
        out.writerow([domain, n])
    return 0


if __name__ == "__main__":
    sys.exit(main())
