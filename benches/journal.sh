#!/usr/bin/env bash
# What the catalog journal (point-in-time restore, docs/BACKUP.md) costs:
# import a corpus into a fresh archive with the journal off (never backed up)
# and on (`ama backup run` once before the import), in interleaved rounds;
# then the journal's size and the backup run that ships it.
#
#   cargo build --release -p ama-cli
#   ROUNDS=3 benches/journal.sh ../shared/corpus/enron-inbox
#
# Prints one line per import and the medians. Scratch data in $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${1:?usage: benches/journal.sh CORPUS}"
corpus="$(realpath "$corpus")"
ama="${AMA_BIN:-$PWD/target/release/ama}"
rounds="${ROUNDS:-3}"
[ -x "$ama" ] || { echo "build first: cargo build --release -p ama-cli" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/ama-journal-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export AMA_PASSPHRASE="journal benchmark passphrase"
export AMA_INSECURE_FAST_KDF=1
results="$work/results"

for r in $(seq "$rounds"); do
  for mode in off on; do
    data="$work/$mode-$r"
    "$ama" --data "$data" init >/dev/null
    "$ama" --data "$data" tenant add bench >/dev/null
    if [ "$mode" = on ]; then
      "$ama" --data "$data" backup init --to "$work/backup-$r" >/dev/null 2>&1
      "$ama" --data "$data" backup run >/dev/null
    fi
    t0=$(date +%s.%N)
    "$ama" --data "$data" import --tenant bench "$corpus" >/dev/null 2>"$work/err" ||
      { cat "$work/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    extra=""
    if [ "$mode" = on ]; then
      jbytes=$("$ama" --data "$data" backup status --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["journal_bytes_behind"])')
      b0=$(date +%s.%N)
      "$ama" --data "$data" backup run >/dev/null
      b1=$(date +%s.%N)
      extra="$jbytes $(python3 -c "print($b1 - $b0)")"
    fi
    cat_bytes=$(stat -c %s "$data/catalog.redb")
    echo "$mode $(python3 -c "print($t1 - $t0)") $cat_bytes $extra" | tee -a "$results"
    rm -rf "$data" "$work/backup-$r"
  done
done

n=$(find "$corpus" -type f | wc -l)
python3 - "$results" "$n" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
n = int(sys.argv[2])
off = [float(r[1]) for r in rows if r[0] == "off"]
on = [float(r[1]) for r in rows if r[0] == "on"]
mo, mn = statistics.median(off), statistics.median(on)
print(f"files: {n}; rounds: {len(off)}")
print(f"import, journal off: median {mo:.1f} s ({n / mo:.0f} files/s)")
print(f"import, journal on:  median {mn:.1f} s ({n / mn:.0f} files/s); on/off = {mn / mo:.3f}")
jb = statistics.median(int(r[3]) for r in rows if r[0] == "on")
ship = statistics.median(float(r[4]) for r in rows if r[0] == "on")
cat_on = statistics.median(int(r[2]) for r in rows if r[0] == "on")
cat_off = statistics.median(int(r[2]) for r in rows if r[0] == "off")
print(f"journal before shipping: median {jb / 1e6:.1f} MB; catalog file after the import: off {cat_off / 1e6:.1f} MB, on {cat_on / 1e6:.1f} MB (after the run pruned it)")
print(f"backup run shipping it (blobs, snapshot, segment): median {ship:.1f} s")
PY
