"""Bulk import of .eml files, directories, mbox files and Maildirs into a
tenant, with a progress bar (tqdm when installed, a plain counter otherwise).

    AMA_PASSPHRASE=... python examples/python/bulk_import.py --data DIR --tenant acme PATH...
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import ama


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="the archive's data directory")
    p.add_argument("--tenant", required=True)
    p.add_argument("paths", nargs="+")
    args = p.parse_args(argv)
    try:
        from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

        bar = tqdm(unit="msg")

        def progress(pr: ama.ImportProgress) -> None:
            bar.n = pr.messages
            bar.refresh()

    except ImportError:

        def progress(pr: ama.ImportProgress) -> None:
            print(f"\r{pr.messages} messages", end="", file=sys.stderr)

    with ama.Archive.open(args.data, passphrase=os.environ["AMA_PASSPHRASE"]) as archive:
        summary = archive.tenant(args.tenant).import_path(
            args.paths, progress=progress, progress_every=100
        )
    print(file=sys.stderr)
    print(
        f"imported {summary.imported}, duplicates {summary.duplicates}, "
        f"refused {summary.refused}"
    )
    for r in summary.refusals[:10]:
        print(f"  refused {r.origin}: {r.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
