# On the device: print each run's epochs every 60 s until every named sweep left work/sweeps/TAG/result.json,
# or SECONDS pass.  Usage: bash benchmarks/device/watch.sh SECONDS TAG [TAG ...]
end=$((SECONDS + $1)); shift
while [ $SECONDS -lt $end ]; do
  left=0; for t in "$@"; do [ -f work/sweeps/$t/result.json ] || left=$((left + 1)); done
  echo "== ${SECONDS}s, sweeps still running: $left"
  for r in work/sweeps/*/runs/*; do [ -d "$r" ] && echo "$r: $(( $(cat $r/metrics.csv 2>/dev/null | wc -l) - 1 )) epochs"; done
  grep -il "traceback" work/sweeps/*/*.log 2>/dev/null
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  [ $left = 0 ] && break
  sleep 60
done
for t in "$@"; do tail -n 12 work/sweeps/$t.out 2>/dev/null; done
