#!/usr/bin/env bash
# Schemathesis against the relay's HTTP API and its own OpenAPI document.
#
# usage: .ci/schemathesis.sh [PATH/TO/nano-relay]    (default: $NANO_RELAY, else target/debug/nano-relay)
# env:   ST_SCHEMA=FILE   test against this document instead of the served GET /openapi.json
#                         (e.g. crates/nano-relay/openapi.json before the binary is rebuilt)
#        ST_EXAMPLES=N    test cases per operation and phase (default 300)
#        ST_SEED=N        hypothesis seed (default 1)
#        NANO_CLIENT=BIN  nano-client used to register real users (default: beside the relay;
#                         skipped when absent)
# Exits with schemathesis's status: non-zero on any failed check or error.
set -euo pipefail

RELAY=${1:-${NANO_RELAY:-target/debug/nano-relay}}
CLIENT=${NANO_CLIENT:-$(dirname "$RELAY")/nano-client}
VENV=/var/tmp/nano-ci-venv-st
ST_VERSION=4.32.5

if ! "$VENV/bin/st" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION"
fi

WORK=$(mktemp -d /tmp/nano-st.XXXXXX)
RELAY_PID=
cleanup() {
    if [ -n "$RELAY_PID" ]; then
        kill "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/relay.toml" <<EOF
[server]
bind_address = "127.0.0.1"
api_port = 0
websocket_port = 0

[storage]
url = "sqlite://$WORK/data/relay.db"
data_dir = "$WORK/data"
EOF

"$RELAY" --config "$WORK/relay.toml" > "$WORK/relay.out" 2> "$WORK/relay.err" &
RELAY_PID=$!

# The relay prints one line: nano-relay listening api=http://ADDR websocket=...
API=
for _ in $(seq 1 150); do
    API=$(sed -n 's/^nano-relay listening api=\(http[^ ]*\) .*/\1/p' "$WORK/relay.out")
    [ -n "$API" ] && break
    kill -0 "$RELAY_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$API" ]; then
    echo "nano-relay did not start:" >&2
    cat "$WORK/relay.err" >&2
    exit 1
fi
echo "relay API at $API"

# 413 frame_too_large is how the relay refuses a body over 262144 bytes: a valid rejection of
# schema-violating (over-long) data.
cat > "$WORK/schemathesis.toml" <<'EOF'
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
EOF

# Registered users let GET /v1/users/{name} answer 200 and PUT .../keys reach its signature
# checks (random bodies never register anyone).
if [ -x "$CLIENT" ]; then
    names=()
    for mode in classical quantum; do
        if NANO_PASSPHRASE=schemathesis-ci "$CLIENT" --home "$WORK/home-$mode" init \
                --username "st-$mode" --crypto-mode "$mode" --relay "$API" > /dev/null &&
            NANO_PASSPHRASE=schemathesis-ci "$CLIENT" --home "$WORK/home-$mode" register > /dev/null; then
            names+=("\"st-$mode\"")
        fi
    done
    if [ ${#names[@]} -gt 0 ]; then
        cat >> "$WORK/schemathesis.toml" <<EOF

[dictionaries.users]
values = [$(IFS=,; echo "${names[*]}")]

[parameters]
"path.name" = { dictionary = "users", probability = 0.5 }
EOF
    fi
fi

if [ -n "${ST_SCHEMA:-}" ]; then
    target=("$ST_SCHEMA" --url "$API")
else
    target=("$API/openapi.json")
fi

status=0
"$VENV/bin/st" --config-file "$WORK/schemathesis.toml" run "${target[@]}" \
    --checks all \
    --max-examples "${ST_EXAMPLES:-300}" \
    --seed "${ST_SEED:-1}" \
    --generation-database none \
    --continue-on-failure \
    --no-color \
    || status=$?
exit "$status"
