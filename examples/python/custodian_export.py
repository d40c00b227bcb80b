"""Export everything one custodian sent in a year, as a zip of .eml files
with a manifest (the bytes of each message exactly as archived).

    AMA_PASSPHRASE=... python examples/python/custodian_export.py \\
        --data DIR --tenant acme --custodian ceo@acme.example --year 2023 --out ceo-2023.zip
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import ama


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--custodian", required=True, help="the sender's address")
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--out", required=True, help="a new .zip file")
    args = p.parse_args(argv)
    query = f"from:{args.custodian} after:{args.year}-01-01 before:{args.year + 1}-01-01"
    with ama.Archive.open(args.data, passphrase=os.environ["AMA_PASSPHRASE"]) as archive:
        n = archive.tenant(args.tenant).export(args.out, query=query, format="zip")
    print(f"exported {n} messages to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
