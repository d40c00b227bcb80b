#!/usr/bin/env bash
# Import throughput into different blob stores, with the release `ama`:
# the local default, one S3 bucket (SeaweedFS on loopback), three local
# stores replicated with quorum 2, and two local stores + S3 (quorum 2).
#
#   cargo build --release -p ama-cli
#   benches/stores.sh ../shared/corpus/enron-inbox
#
# Needs .venv-s3/bin/weed (scripts/test installs it). Prints one line per
# configuration: seconds, messages/s, peak RSS. Scratch data in $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${1:?usage: benches/stores.sh CORPUS}"
corpus="$(realpath "$corpus")"
ama="${AMA_BIN:-$PWD/target/release/ama}"
weed="$PWD/.venv-s3/bin/weed"
[ -x "$ama" ] || { echo "build first: cargo build --release -p ama-cli" >&2; exit 1; }
[ -x "$weed" ] || { echo "no $weed (scripts/test installs it)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/ama-stores-bench.XXXXXX")"
weed_pid=""
cleanup() {
  [ -n "$weed_pid" ] && kill "$weed_pid" 2>/dev/null && wait "$weed_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export AMA_PASSPHRASE="stores benchmark passphrase"
export AMA_INSECURE_FAST_KDF=1
export AMA_BENCH_S3_ACCESS_KEY_ID=benchkey AMA_BENCH_S3_SECRET_ACCESS_KEY=benchsecret

# SeaweedFS on ports of its own (base 28400).
b=28400
mkdir -p "$work/weed"
AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret "$weed" mini -dir="$work/weed" \
  -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false -webdav=false -master.telemetry=false \
  -bucket=bench -master.port=$((b + 1)) -master.port.grpc=$((b + 2)) -volume.port=$((b + 3)) \
  -volume.port.grpc=$((b + 4)) -filer.port=$((b + 5)) -filer.port.grpc=$((b + 6)) \
  -s3.port=$((b + 7)) -s3.port.grpc=$((b + 8)) -s3.port.iceberg=$((b + 9)) \
  -s3.port.lance=$((b + 10)) -admin.port=$((b + 11)) -admin.port.grpc=$((b + 12)) \
  -webdav.port=$((b + 13)) >"$work/weed.log" 2>&1 &
weed_pid=$!
s3="s3://bench/PREFIX?endpoint=http://127.0.0.1:$((b + 7))"
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$((b + 7))/" && break
  sleep 0.2
done

s3store() { echo "{\"name\": \"$1\", \"type\": \"s3\", \"url\": \"${s3/PREFIX/$2}\", \"credentials_env\": \"AMA_BENCH_S3\"}"; }
local_store() { echo "{\"name\": \"$1\", \"type\": \"local\", \"path\": \"$1\"}"; }

run() { # name, stores.json text (empty: the default DATA/blobs)
  local name="$1" config="$2" data="$work/$1"
  if [ -n "$config" ]; then
    echo "$config" >"$work/$name.json"
    "$ama" --data "$data" init --stores "$work/$name.json" >/dev/null 2>&1 ||
      "$ama" --data "$data" init --stores "$work/$name.json"
  else
    "$ama" --data "$data" init >/dev/null
  fi
  "$ama" --data "$data" tenant add bench >/dev/null
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/$name.rss" "$ama" --data "$data" import --tenant bench "$corpus" >/dev/null 2>"$work/$name.err" ||
    { cat "$work/$name.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  rss=$(tail -1 "$work/$name.rss")
  local n
  n=$("$ama" --data "$data" stats --json | python3 -c 'import json,sys; print(sum(json.loads(l)["messages"]+json.loads(l).get("duplicates",0) for l in sys.stdin if l.strip()))')
  python3 - "$name" "$t0" "$t1" "$n" "$rss" <<'EOF'
import sys
name, t0, t1, n, rss = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = t1 - t0
print(f"{name:<22} {s:8.1f} s {n / s:9.0f} msg/s  {n:7d} messages  peak RSS {rss / 1024:6.0f} MiB")
EOF
}

run local ""
run s3 "{\"version\": 1, \"stores\": [$(s3store s3 one)]}"
run replicated-3-local "{\"version\": 1, \"write_quorum\": 2, \"stores\": [$(local_store a), $(local_store b), $(local_store c)]}"
run replicated-2-local-s3 "{\"version\": 1, \"write_quorum\": 2, \"stores\": [$(local_store a), $(local_store b), $(s3store s3 two)]}"
