"""Put every message a query finds on legal hold (it then survives retention
sweeps and deletion requests until released), and say how many it covers.

    AMA_PASSPHRASE=... python examples/python/hold_by_query.py --data DIR --tenant acme \\
        --name case-2024-17 --query 'subject:"project falcon"' --reason "litigation 2024-17"
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
    p.add_argument("--name", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--reason", required=True)
    args = p.parse_args(argv)
    with ama.Archive.open(args.data, passphrase=os.environ["AMA_PASSPHRASE"]) as archive:
        tenant = archive.tenant(args.tenant)
        covered = tenant.count(args.query)
        tenant.place_hold(args.name, query=args.query, reason=args.reason)
    print(f"hold {args.name} placed; it covers {covered} messages now (and any that match later)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
