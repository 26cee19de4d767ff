#!/usr/bin/env bash
# Runs the performance guide's Artillery scenario (bench/artillery-load-test.yml) against a relay
# and fails unless it measured something: starts a relay (or uses --relay), registers the
# recipients user_1 … user_N, runs Artillery 2, then reads the relay's /metrics and exits nonzero
# unless the relay processed at least 95 % of the send_message frames Artillery sent, counted no
# error of any code, and no virtual user failed. See bench/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/artillery.sh [options]

  --short               CI preset: --time-scale 0.1 --rate-scale 0.1 --users 5 --messages 5
                        (phases 6 s + 30 s + 6 s at 1, 5, 10 arrivals/s; about 70 s in all)
  --relay URL           HTTP API of a running relay (e.g. http://127.0.0.1:8080); default: start
                        one on free loopback ports (plain ws://) with a temporary SQLite store
  --relay-ca FILE       with --relay over https://: the certificate its API presents (e.g. the
                        development relay's data/tls-self-signed.crt), for curl and nano-client
  --users N             recipients user_1 … user_N, registered if missing (default 1000)
  --messages N          messages per sending virtual user, one second apart (default 100)
  --time-scale F        multiply the phase durations by F (default 1)
  --rate-scale F        multiply the arrival rates by F (default 1)
  --min-processed PCT   fail below this share of sends processed (default 95)
  --script FILE         the Artillery script (default bench/artillery-load-test.yml)
  --output FILE         also copy Artillery's JSON report here
  --keep                keep the work directory (relay config and log, report) on success

Environment:
  NANO_ARTILLERY_DIR    npm prefix holding Artillery, installed there if missing and reused
                        (default /var/tmp/nano-artillery)
  NANO_BIN_DIR          directory holding nano-relay and nano-client (default: the first of
                        $CARGO_TARGET_DIR/release, $CARGO_TARGET_DIR/debug, target/release,
                        target/debug that has both)
EOF
}

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ART_DIR="${NANO_ARTILLERY_DIR:-/var/tmp/nano-artillery}"
RELAY_API=""
RELAY_CA=""
USERS=1000
MESSAGES=100
TIME_SCALE=1
RATE_SCALE=1
MIN_PROCESSED=95
SCRIPT="$ROOT/bench/artillery-load-test.yml"
OUTPUT=""
KEEP=0

while [ $# -gt 0 ]; do
  case "$1" in
    --short) TIME_SCALE=0.1 RATE_SCALE=0.1 USERS=5 MESSAGES=5 ;;
    --relay) RELAY_API="${2:?--relay needs a URL}"; shift ;;
    --relay-ca) RELAY_CA="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift ;;
    --users) USERS="${2:?}"; shift ;;
    --messages) MESSAGES="${2:?}"; shift ;;
    --time-scale) TIME_SCALE="${2:?}"; shift ;;
    --rate-scale) RATE_SCALE="${2:?}"; shift ;;
    --min-processed) MIN_PROCESSED="${2:?}"; shift ;;
    --script) SCRIPT="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift ;;
    --output) OUTPUT="${2:?}"; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "artillery.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "== artillery.sh: $*"; }
die() { echo "artillery.sh: FAIL: $*" >&2; exit 1; }

for n in "$USERS" "$MESSAGES"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "--users and --messages take a positive integer, not '$n'"
done
for f in "$TIME_SCALE" "$RATE_SCALE" "$MIN_PROCESSED"; do
  [[ "$f" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--time-scale, --rate-scale and --min-processed take a number, not '$f'"
done
command -v node >/dev/null || die "node (18 or later) is needed"
command -v curl >/dev/null || die "curl is needed"

# --- Artillery, installed once into a directory reused between runs -----------------------------
ARTILLERY="$ART_DIR/node_modules/.bin/artillery"
if [ ! -x "$ARTILLERY" ]; then
  say "installing artillery@2 into $ART_DIR"
  # Artillery's Playwright engine would download Chromium at install time; the ws engine needs none.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$ART_DIR" --no-audit --no-fund \
    --loglevel=error artillery@2 >/dev/null
fi
export ARTILLERY_DISABLE_TELEMETRY=true

# --- binaries ------------------------------------------------------------------------------------
if [ -z "${NANO_BIN_DIR:-}" ]; then
  for d in ${CARGO_TARGET_DIR:+"$CARGO_TARGET_DIR/release" "$CARGO_TARGET_DIR/debug"} \
    "$ROOT/target/release" "$ROOT/target/debug"; do
    if [ -x "$d/nano-relay" ] && [ -x "$d/nano-client" ]; then NANO_BIN_DIR="$d"; break; fi
  done
fi
[ -n "${NANO_BIN_DIR:-}" ] && [ -x "$NANO_BIN_DIR/nano-client" ] ||
  die "nano-relay and nano-client not found: build them (cargo build --release -p nano-relay -p nano-client) or set NANO_BIN_DIR"
[ -n "$RELAY_API" ] || [ -x "$NANO_BIN_DIR/nano-relay" ] || die "no nano-relay in $NANO_BIN_DIR"

# Thousands of WebSocket connections at the guide's peak: one descriptor each, on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nano-artillery.XXXXXX")"
RELAY_PID=""
OK=0
cleanup() {
  if [ -n "$RELAY_PID" ]; then
    kill "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
  fi
  if [ "$OK" = 1 ] && [ "$KEEP" = 0 ]; then
    rm -rf "$WORK"
  else
    echo "artillery.sh: work directory kept: $WORK" >&2
  fi
}
trap cleanup EXIT

# --- the relay -----------------------------------------------------------------------------------
if [ -z "$RELAY_API" ]; then
  # Plain ws:// on free loopback ports. Every virtual user connects from 127.0.0.1, so the
  # per-address rate limit is lifted; the guide's peak keeps about 6,400 connections open. The
  # relay refuses a max_connections its descriptor limit cannot hold (plus its API connections,
  # storage pool and spares), so stay 4,096 below the hard limit.
  max_connections=50000
  hard="$(ulimit -Hn)"
  if [ "$hard" != unlimited ] && [ "$hard" -lt $((max_connections + 4096)) ]; then
    max_connections=$((hard - 4096))
    [ "$max_connections" -ge 100 ] || die "the open-file hard limit ($hard) is too low for a load test"
  fi
  cat >"$WORK/relay.toml" <<EOF
[server]
bind_address = "127.0.0.1"
api_port = 0
websocket_port = 0
max_connections = $max_connections

[storage]
url = "sqlite://$WORK/relay.db"
data_dir = "$WORK/data"

[security]
allow_anonymous_send = true
allow_opaque_payloads = true
rate_limit_per_address = 10000000

[limits]
inbox_quota = 10000000
EOF
  # The relay lets these override its file; this run's store is the temporary one.
  env -u NANO_STORAGE_URL -u NANO_L2_CACHE_URL -u NANO_L2_KEY_PREFIX -u NANO_TLS_KEY_PATH \
    RUST_LOG="${RUST_LOG:-warn}" \
    "$NANO_BIN_DIR/nano-relay" --config "$WORK/relay.toml" >"$WORK/relay.out" 2>"$WORK/relay.log" &
  RELAY_PID=$!
  for _ in $(seq 1 300); do
    grep -q '^nano-relay listening' "$WORK/relay.out" 2>/dev/null && break
    kill -0 "$RELAY_PID" 2>/dev/null || { cat "$WORK/relay.log" >&2; die "the relay did not start"; }
    sleep 0.1
  done
  line="$(grep '^nano-relay listening' "$WORK/relay.out")" || die "the relay did not say where it listens"
  RELAY_API="$(sed -n 's/.* api=\([^ ]*\).*/\1/p' <<<"$line")"
  say "started $NANO_BIN_DIR/nano-relay (pid $RELAY_PID, $WORK/relay.toml)"
fi
RELAY_API="${RELAY_API%/}"

# HTTP to the relay's API (trusting --relay-ca if given).
api_get() {
  curl -fsS ${RELAY_CA:+--cacert "$RELAY_CA"} "$@"
}
export -f api_get

# A JSON field of standard input, with node (jq may be missing).
json_field() {
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];console.log(v===undefined?"":v)})' "$1"
}
info="$(api_get "$RELAY_API/v1/relay")" || die "no relay answers at $RELAY_API/v1/relay"
WS_URL="$(json_field websocket_url <<<"$info")"
[ "$(json_field allow_anonymous_send <<<"$info")" = true ] ||
  die "the relay refuses anonymous sends (security.allow_anonymous_send); the guide's frames are anonymous"
say "relay api $RELAY_API, websocket $WS_URL"

# --- the recipients ------------------------------------------------------------------------------
# Any keystore passphrase: these identities only have to exist on the relay for this run.
export NANO_PASSPHRASE=artillery-load-test
register() {
  local name="user_$1" home="$WORK/users/user_$1"
  if api_get -o /dev/null "$RELAY_API/v1/users/$name" 2>/dev/null; then return 0; fi
  "$NANO_BIN_DIR/nano-client" --home "$home" init --username "$name" --crypto-mode hybrid \
    --relay "$RELAY_API" ${RELAY_CA:+--relay-ca "$RELAY_CA"} >/dev/null &&
    "$NANO_BIN_DIR/nano-client" --home "$home" register >/dev/null ||
    { echo "artillery.sh: cannot register $name" >&2; return 1; }
}
export -f register
export NANO_BIN_DIR RELAY_API RELAY_CA WORK
say "registering user_1 … user_$USERS"
started=$(date +%s)
seq 1 "$USERS" | xargs -P "$(nproc)" -I{} bash -c 'register {}' || die "registration failed"
say "recipients ready in $(($(date +%s) - started)) s"

# --- metrics -------------------------------------------------------------------------------------
# "name{labels} value" lines of the relay's Prometheus text for one metric family.
metric_lines() {
  api_get "$RELAY_API/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { print $1, $2 }'
}
metric_sum() {
  metric_lines "$1" | awk '{ s += $2 } END { printf "%d\n", s }'
}
api_get -o /dev/null "$RELAY_API/metrics" || die "cannot read $RELAY_API/metrics"
processed_before="$(metric_sum nano_messenger_messages_processed_total)"
metric_lines nano_messenger_errors_total >"$WORK/errors.before"
refused_before="$(metric_sum nano_messenger_connections_refused_total)"

# --- Artillery -----------------------------------------------------------------------------------
overrides="$(node -e '
  const yaml = require(process.argv[1]);
  const doc = yaml.safeLoad(require("fs").readFileSync(process.argv[2], "utf8"));
  const ts = Number(process.argv[3]), rs = Number(process.argv[4]);
  const scale = (v, k) => (v === undefined ? undefined : Math.max(1, Math.round(v * k)));
  const phases = doc.config.phases.map((p) => ({
    ...p,
    duration: scale(p.duration, ts),
    arrivalRate: scale(p.arrivalRate, rs),
    rampTo: scale(p.rampTo, rs),
  }));
  console.log(JSON.stringify({ config: { phases } }));
' "$ART_DIR/node_modules/js-yaml" "$SCRIPT" "$TIME_SCALE" "$RATE_SCALE")"
variables="{\"recipients\": $USERS, \"messagesPerUser\": $MESSAGES}"
say "phases: $(node -e 'for (const p of JSON.parse(process.argv[1]).config.phases) process.stdout.write(`${p.duration} s at ${p.arrivalRate}/s; `)' "$overrides")$MESSAGES messages per sender"

started=$(date +%s)
set +e
"$ARTILLERY" run --target "$WS_URL" --variables "$variables" --overrides "$overrides" \
  --output "$WORK/report.json" "$SCRIPT"
art_rc=$?
set -e
took=$(($(date +%s) - started))
[ "$art_rc" = 0 ] || die "artillery exited with $art_rc"
[ -z "$OUTPUT" ] || cp "$WORK/report.json" "$OUTPUT"

# Artillery's counters: the send_message frames it sent (the processor counts them; a script
# without it is taken to send nothing else), all frames, failed virtual users.
read -r sent frames failed vusers < <(node -e '
  const c = require(process.argv[1]).aggregate.counters || {};
  const n = (k) => c[k] || 0;
  const frames = n("websocket.messages_sent");
  const sent = "nano.frames.send_message" in c ? n("nano.frames.send_message") : frames;
  console.log(sent, frames, n("vusers.failed"), n("vusers.created"));
' "$WORK/report.json")
expected_frames="$(node -e '
  const c = require(process.argv[1]).aggregate.counters || {};
  console.log("nano.frames.send_message" in c ? (c["nano.frames.send_message"] || 0) + (c["nano.frames.key_exchange"] || 0) : "");
' "$WORK/report.json")"
if [ -z "$expected_frames" ]; then
  say "no nano.frames.* counters (a script without artillery-processor.js): every frame counts as a send"
fi

# The writer commits in batches: wait until the count stops moving (at most 30 s).
processed=-1
for _ in $(seq 1 30); do
  now="$(metric_sum nano_messenger_messages_processed_total)"
  [ "$now" = "$processed" ] && break
  processed="$now"
  sleep 1
done
processed=$((processed - processed_before))
metric_lines nano_messenger_errors_total >"$WORK/errors.after"
refused=$(($(metric_sum nano_messenger_connections_refused_total) - refused_before))
errors="$(awk 'NR == FNR { before[$1] = $2; next } $2 - before[$1] > 0 { printf "%s +%d\n", $1, $2 - before[$1] }' \
  "$WORK/errors.before" "$WORK/errors.after")"

# --- verdict -------------------------------------------------------------------------------------
pct="$(awk -v p="$processed" -v s="$sent" 'BEGIN { printf "%.1f", (s > 0 ? 100 * p / s : 0) }')"
echo
say "result: $vusers virtual users ($failed failed), $frames frames sent, of them $sent send_message;"
say "        relay processed $processed ($pct %), refused $refused connections; Artillery ran $took s"
if [ -n "$errors" ]; then
  say "relay errors during the run:"
  sed 's/^/    /' <<<"$errors"
else
  say "relay errors during the run: none"
fi

fail=0
[ "$sent" -gt 0 ] || { echo "artillery.sh: FAIL: Artillery sent no send_message" >&2; fail=1; }
if [ -n "$expected_frames" ] && [ "$frames" != "$expected_frames" ]; then
  echo "artillery.sh: FAIL: Artillery sent $frames frames, the scenario's steps $expected_frames" >&2
  fail=1
fi
awk -v p="$processed" -v s="$sent" -v m="$MIN_PROCESSED" 'BEGIN { exit !(p * 100 >= s * m) }' ||
  { echo "artillery.sh: FAIL: the relay processed $processed of $sent sends ($pct % < $MIN_PROCESSED %)" >&2; fail=1; }
[ -z "$errors" ] || { echo "artillery.sh: FAIL: the relay counted errors (nano_messenger_errors_total)" >&2; fail=1; }
[ "$failed" = 0 ] || { echo "artillery.sh: FAIL: $failed virtual users failed (see errors.* above)" >&2; fail=1; }
[ "$refused" = 0 ] || { echo "artillery.sh: FAIL: the relay refused $refused connections" >&2; fail=1; }
[ "$fail" = 0 ] || exit 1
OK=1
say "PASS"
