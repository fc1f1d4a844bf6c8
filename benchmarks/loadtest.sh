#!/usr/bin/env bash
# Load test of the Cat Scanner HTTP API (issue 5): starts `catscan serve` on loopback, posts a real
# photo to POST /api/v1/scan with wrk for a while, and reports requests/s, latency p50/p99 and
# non-2xx responses / socket errors. The server is stopped again at the end.
#
# Needs wrk (an HTTP benchmarking tool): Debian/Ubuntu `sudo apt-get install -y wrk`
# (macOS: `brew install wrk`), plus curl. Run from the repository root with the venv active:
#
#   benchmarks/loadtest.sh                          # 30 s, 16 connections, raw image/jpeg body
#   benchmarks/loadtest.sh --duration 5s            # a smoke run
#   benchmarks/loadtest.sh --mode multipart         # multipart form field "file" instead
#   benchmarks/loadtest.sh --models DIR --workers 2 --photo cat.jpg --json-out loadtest.json
#
# Options (or the environment variables in brackets):
#   --duration D      wrk duration, e.g. 30s, 1m                      [DURATION=30s]
#   --connections N   concurrent connections                          [CONNECTIONS=16]
#   --wrk-threads N   wrk's own threads                               [WRK_THREADS=2]
#   --photo FILE      photo to post (default: a real Oxford test cat)  [PHOTO]
#   --mode M          raw (Content-Type: image/jpeg) or multipart     [MODE=raw]
#   --models DIR      model folder passed to catscan serve            [MODELS]
#   --workers N       catscan serve --workers (inference threads)     [WORKERS]
#   --max-queue N     catscan serve --max-queue                       [MAX_QUEUE]
#   --port P          loopback port                                   [PORT=8765]
#   --json-out FILE   where to write the JSON summary                 [JSON_OUT=loadtest.json]
#   --timeout D       wrk per-request timeout                         [TIMEOUT=10s]
set -euo pipefail

DURATION=${DURATION:-30s}
CONNECTIONS=${CONNECTIONS:-16}
WRK_THREADS=${WRK_THREADS:-2}
PHOTO=${PHOTO:-}
MODE=${MODE:-raw}
MODELS=${MODELS:-}
WORKERS=${WORKERS:-}
MAX_QUEUE=${MAX_QUEUE:-}
PORT=${PORT:-8765}
JSON_OUT=${JSON_OUT:-loadtest.json}
TIMEOUT=${TIMEOUT:-10s}
CATSCAN=${CATSCAN:-catscan}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --wrk-threads) WRK_THREADS=$2; shift 2 ;;
    --photo) PHOTO=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --max-queue) MAX_QUEUE=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --json-out) JSON_OUT=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "loadtest.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "loadtest.sh: $*" >&2; exit 2; }
command -v wrk >/dev/null || die "wrk is not installed: sudo apt-get install -y wrk (Debian/Ubuntu) or brew install wrk (macOS)."
command -v curl >/dev/null || die "curl is not installed: sudo apt-get install -y curl."
command -v "$CATSCAN" >/dev/null || die "'$CATSCAN' not found: activate the venv (. .venv/bin/activate) or pip install -e ."
[[ $MODE == raw || $MODE == multipart ]] || die "--mode must be raw or multipart."

if [[ -z $PHOTO ]]; then
  if [[ -n ${CATSCAN_DATA:-} && -d $CATSCAN_DATA/oxford-iiit-pet ]]; then DATA=$CATSCAN_DATA/oxford-iiit-pet
  else DATA=${CATSCAN_DATA:-../shared/data/oxford-iiit-pet}; fi
  PHOTO=$DATA/images/Abyssinian_1.jpg
fi
[[ -f $PHOTO ]] || die "photo $PHOTO not found: pass --photo FILE."
PHOTO=$(cd "$(dirname "$PHOTO")" && pwd)/$(basename "$PHOTO")

URL=http://127.0.0.1:$PORT
curl -s -o /dev/null "$URL/healthz" && die "something already listens on port $PORT: pass --port."

WORK=$(mktemp -d -t catscan-loadtest.XXXXXX)
SERVER_LOG=$WORK/server.log
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

args=(serve --host 127.0.0.1 --port "$PORT")
[[ -n $MODELS ]] && args+=(--models "$MODELS")
[[ -n $WORKERS ]] && args+=(--workers "$WORKERS")
[[ -n $MAX_QUEUE ]] && args+=(--max-queue "$MAX_QUEUE")
echo "starting: $CATSCAN ${args[*]}"
T0=$(date +%s.%N)
"$CATSCAN" "${args[@]}" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

ready=
for _ in $(seq 600); do  # up to 60 s for the models to load
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; die "the server exited while starting."; }
  code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz" || true)
  [[ $code == 200 ]] && { ready=1; break; }
  sleep 0.1
done
[[ -n $ready ]] || { cat "$SERVER_LOG" >&2; die "the server did not become ready (GET /healthz != 200) in 60 s."; }
READY_S=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
echo "server ready after ${READY_S} s (pid $SERVER_PID)"

# One request first: the answer must be a 200 with a scan result, or the load test means nothing.
if [[ $MODE == raw ]]; then
  check=$(curl -s -w '\n%{http_code}' -H 'Content-Type: image/jpeg' --data-binary @"$PHOTO" "$URL/api/v1/scan")
else
  check=$(curl -s -w '\n%{http_code}' -F "file=@$PHOTO;type=image/jpeg" "$URL/api/v1/scan")
fi
status=${check##*$'\n'}
body=${check%$'\n'*}
[[ $status == 200 && $body == *'"is_cat"'* ]] || die "POST /api/v1/scan answered $status: $body"
echo "check request: HTTP 200, ${body:0:160}..."

cat >"$WORK/post.lua" <<'LUA'
-- POST the photo in $LOADTEST_PHOTO as a raw image/jpeg body or as multipart field "file".
local f = assert(io.open(os.getenv("LOADTEST_PHOTO"), "rb"))
local data = f:read("*all")
f:close()
wrk.method = "POST"
if os.getenv("LOADTEST_MODE") == "multipart" then
  local b = "catscanloadtest7MA4YWxkTrZu0gW"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. b
  wrk.body = "--" .. b .. "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
    .. "Content-Type: image/jpeg\r\n\r\n" .. data .. "\r\n--" .. b .. "--\r\n"
else
  wrk.headers["Content-Type"] = "image/jpeg"
  wrk.body = data
end

local threads = {}
function setup(thread) table.insert(threads, thread) end
statuses = {}
function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
end

function done(summary, latency, requests)
  local codes, parts = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do codes[k] = (codes[k] or 0) + v end
  end
  for k, v in pairs(codes) do table.insert(parts, string.format('"%s": %d', k, v)) end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'LOADTEST_JSON {"requests": %d, "duration_s": %.2f, "requests_per_s": %.2f, ' ..
    '"latency_ms": {"p50": %.1f, "p90": %.1f, "p99": %.1f, "mean": %.1f, "max": %.1f}, ' ..
    '"non_2xx_3xx": %d, "socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"status_codes": {%s}}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000,
    e.status, e.connect, e.read, e.write, e.timeout, table.concat(parts, ", ")))
end
LUA

LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo null)
echo "wrk: ${DURATION}, ${CONNECTIONS} connections, ${WRK_THREADS} wrk threads, $MODE body of $(basename "$PHOTO") ($(wc -c <"$PHOTO") bytes)"
LOADTEST_PHOTO=$PHOTO LOADTEST_MODE=$MODE \
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout "$TIMEOUT" --latency -s "$WORK/post.lua" \
  "$URL/api/v1/scan" | tee "$WORK/wrk.out"
LOAD_AFTER=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo null)
SERVER_RSS_MB=$(ps -o rss= -p "$SERVER_PID" | awk '{ printf "%.0f", $1 / 1024 }')
SERVER_PEAK_MB=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo null)

summary=$(sed -n 's/^LOADTEST_JSON //p' "$WORK/wrk.out")
[[ -n $summary ]] || die "wrk printed no summary (see above)."
python3 - "$summary" "$JSON_OUT" <<PY
import json, sys
s = json.loads(sys.argv[1])
s.update({
    "tool": "wrk", "url": "$URL/api/v1/scan", "mode": "$MODE", "photo": "$PHOTO",
    "photo_bytes": $(wc -c <"$PHOTO"), "duration": "$DURATION", "connections": $CONNECTIONS,
    "wrk_threads": $WRK_THREADS, "server_workers": "${WORKERS:-default (one per CPU core)}",
    "server_ready_s": $READY_S, "server_rss_mb_after": ${SERVER_RSS_MB:-null},
    "server_peak_rss_mb": ${SERVER_PEAK_MB:-null}, "cpu_count": $(nproc),
    "load_average_before": $LOAD_BEFORE, "load_average_after": $LOAD_AFTER,
})
ok = sum(v for k, v in s["status_codes"].items() if k.startswith("2"))
s["ok_2xx"] = ok
open(sys.argv[2], "w").write(json.dumps(s, indent=2) + "\n")
errs = sum(s["socket_errors"].values())
print()
print(f"requests/s      {s['requests_per_s']:.1f}  ({s['requests']} requests in {s['duration_s']:.1f} s, "
      f"{s['connections']} connections)")
print(f"latency         p50 {s['latency_ms']['p50']:.0f} ms, p90 {s['latency_ms']['p90']:.0f} ms, "
      f"p99 {s['latency_ms']['p99']:.0f} ms, max {s['latency_ms']['max']:.0f} ms")
print(f"responses       {ok} x 2xx, {s['non_2xx_3xx']} non-2xx/3xx, status codes {s['status_codes']}")
print(f"socket errors   {errs} {s['socket_errors']}")
print(f"server memory   {s['server_rss_mb_after']} MB RSS after the run (peak {s['server_peak_rss_mb']} MB); "
      f"load average {s['load_average_before']} -> {s['load_average_after']} on {s['cpu_count']} cores")
print(f"JSON written to {sys.argv[2]}")
PY
