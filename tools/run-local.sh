#!/usr/bin/env bash
# Starts the stack on this machine: two r1-worker processes serving MODEL_DIR and r1-gateway on
# 127.0.0.1:8080 in front of them. Ctrl-C stops everything. Used by `make run`.
#   tools/run-local.sh MODEL_DIR
# Environment: BUILD (default build), GATEWAY (default 127.0.0.1:8080), WORKER_PORTS
# (default "50051 50052"), WORKER_THREADS (default 1), LOG_DIR (default .cache/logs).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: tools/run-local.sh MODEL_DIR}
BUILD=${BUILD:-build}
GATEWAY=${GATEWAY:-127.0.0.1:8080}
WORKER_PORTS=${WORKER_PORTS:-"50051 50052"}
WORKER_THREADS=${WORKER_THREADS:-1}
LOG_DIR=${LOG_DIR:-.cache/logs}

for prog in r1-worker r1-gateway; do
  if [ ! -x "$BUILD/bin/$prog" ]; then
    echo "run-local: $BUILD/bin/$prog does not exist; build it with 'make build'" >&2
    exit 1
  fi
done
if [ ! -f "$MODEL/config.json" ]; then
  echo "run-local: $MODEL has no config.json (is it a Hugging Face checkpoint directory?)" >&2
  exit 1
fi
mkdir -p "$LOG_DIR"

# A port that answers is taken: say which, before starting anything (otherwise the readiness
# probe below could reach the other server and report this stack as up).
busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in "$GATEWAY" $(for p in $WORKER_PORTS; do echo "127.0.0.1:$p 127.0.0.1:$((p + 1000))"; done); do
  if busy "$addr"; then
    echo "run-local: $addr is already in use (another r1serve, or another server); stop it or" \
      "set GATEWAY=127.0.0.1:PORT / WORKER_PORTS=\"P1 P2\"" >&2
    exit 1
  fi
done

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "run-local: stopping (SIGTERM: workers drain their streams)"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  exit 0
}
trap stop INT TERM EXIT

workers=()
i=0
for port in $WORKER_PORTS; do
  i=$((i + 1))
  "$BUILD/bin/r1-worker" --model "$MODEL" --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$((port + 1000))" --threads "$WORKER_THREADS" \
    >"$LOG_DIR/worker$i.log" 2>&1 &
  pids+=($!)
  workers+=("127.0.0.1:$port")
  echo "run-local: worker $i on 127.0.0.1:$port (metrics 127.0.0.1:$((port + 1000))/metrics, log $LOG_DIR/worker$i.log)"
done
"$BUILD/bin/r1-gateway" --listen "$GATEWAY" --workers "$(IFS=,; echo "${workers[*]}")" \
  >"$LOG_DIR/gateway.log" 2>&1 &
pids+=($!)
echo "run-local: gateway on $GATEWAY (log $LOG_DIR/gateway.log)"

# Ready when the gateway says at least one worker is.
for _ in $(seq 1 120); do
  if curl -fs "http://$GATEWAY/readyz" >/dev/null 2>&1; then
    model_id=$(curl -fs "http://$GATEWAY/v1/models" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -1)
    cat <<MSG

r1serve is up: gateway http://$GATEWAY, model "${model_id:-?}", ${#workers[@]} workers.
Try:
  curl -N http://$GATEWAY/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"${model_id:-r1}","messages":[{"role":"user","content":"Why is the sky blue?"}],"max_tokens":32,"stream":true}'
Metrics: http://$GATEWAY/metrics. Ctrl-C stops everything.
MSG
    break
  fi
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "run-local: a process exited during start-up; its log says:" >&2
      tail -5 "$LOG_DIR"/*.log >&2
      exit 1
    fi
  done
  sleep 0.5
done
if ! curl -fs "http://$GATEWAY/readyz" >/dev/null 2>&1; then
  echo "run-local: the gateway did not become ready in 60 s; see $LOG_DIR/" >&2
  exit 1
fi
wait -n "${pids[@]}" || true
echo "run-local: a process exited; see $LOG_DIR/" >&2
