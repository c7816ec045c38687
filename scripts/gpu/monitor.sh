#!/usr/bin/env bash
# Watch scripts/loo-gpu.sh (its log: $W/loo.log) for up to SECONDS or until it ends: a status line per fold every 30 s,
# for every series under $W (out, v3, ...).
end=$((SECONDS + ${1:?usage: scripts/gpu/monitor.sh SECONDS}))
W=${W:-/tmp/loo}
while [ $SECONDS -lt $end ]; do
  sleep 30
  echo "== $(date -u +%T)"; tail -n 1 "$W/loo.log"
  for log in "$W"/*/*/train.log; do
    [ -f "$log" ] && echo "$(basename "$(dirname "$(dirname "$log")")")/$(basename "$(dirname "$log")"): $(grep -E '^ *epoch|^done' "$log" | tail -n 1 | cut -c1-150)"
  done
  pgrep -f "[s]cripts/loo-gpu.sh" > /dev/null || break
done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null || true
