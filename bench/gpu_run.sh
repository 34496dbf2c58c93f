#!/usr/bin/env bash
# Fine-tune mode on a lent GPU machine (the `device` tool), within its per-call limit.
#
# The device machine gets this working tree but no network. It needs, as ignored paths carried
# with the calls: .benchdata/fer2013.zip (FER2013 train and val folders, about 55 MB), .whl/ (the
# offline encoder's two wheels and SQLAlchemy for Python 3.12, about 22 MB) and .benchtext/ (the
# class-text embeddings, cached here: the MiniLM package is not on that machine). Together they
# are over a call's 64 MiB, so the data travels in a first, short call and stays on the machine
# while it is warm (30 s after a call), and the second call, made at once, runs the benchmark:
#
#   run(command="PHASE=data bash bench/gpu_run.sh", carry=[".benchdata"], timeout_s=120)
#   run(command="PARALLEL=1 PROFILE=1 SEEDS=1 bash bench/gpu_run.sh", carry=[".whl", ".benchtext", ".benchresume"],
#       timeout_s=600)
#
# PARALLEL=1 runs one process per method side by side (WORKERS decoding processes shared among
# them): one run leaves most of the GPU idle. PROFILE=1 profiles 20 steps of each method's first
# run (bench.finetune_benchmark --profile). MODES=head,finetune adds head-mode runs (and the
# feature cache they need: minutes). SEEDS, LABELS, METHODS and STEPS choose the runs. A results
# JSON carried as .benchresume/finetune.json is continued (its runs are not repeated). Results
# land in $OUT/finetune.json and $OUT/finetune.md; here, merge them into the recorded ones with
#   python -m bench.finetune_benchmark --merge docs/results/finetune_fer2013_h200.json finetune.json \
#       --json-out docs/results/finetune_fer2013_h200.json --head-reference docs/results/ssl_fer2013_cpu.json
set -euo pipefail
OUT=${OUT:-/tmp/out}
BUDGET=${BUDGET:-540}  # seconds of work per call, leaving time to write the results
DATA=/tmp/fer-data
mkdir -p "$OUT"
started=$(date +%s)
nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true

if [ ! -d "$DATA/fer2013/train" ]; then
  if [ ! -f .benchdata/fer2013.zip ]; then
    echo "FER2013 is neither unpacked at $DATA nor carried as .benchdata/fer2013.zip: run PHASE=data first" >&2
    exit 2
  fi
  mkdir -p "$DATA" && python3 -m zipfile -e .benchdata/fer2013.zip "$DATA"  # no unzip there
fi
echo "data: $(find "$DATA/fer2013" -type f | wc -l) files in $DATA/fer2013"
if [ "${PHASE:-run}" = data ]; then
  exit 0
fi

# The machine's own torch and packages; the wheels it lacks go to /tmp/site (the device README's way).
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
PY=python3
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
export FER_SHARED_DATA=$DATA FER_BENCH_PROJECT=/tmp/fer-bench-project HF_HUB_OFFLINE=1

resume=()
[ -f .benchresume/finetune.json ] && resume=(--resume-json .benchresume/finetune.json)
left=$(( BUDGET - ($(date +%s) - started) ))
METHODS=${METHODS:-supervised,fixmatch,sitfer}
profile=(); [ "${PROFILE:-0}" = 1 ] && profile=(--profile "$OUT")
common=(--no-write "${resume[@]}" "${profile[@]}" --modes "${MODES:-finetune}" --text-cache .benchtext --seeds "${SEEDS:-0}"
        --labels "${LABELS:-25,100}" --steps "${STEPS:-2000}")
if [ "${PARALLEL:-0}" = 1 ]; then
  # One process per method side by side: one run leaves most of the GPU idle (5.7 of 139 GiB, and
  # 9-23 steps a second), so a lease gets through about as many runs again. Run times are then shared.
  IFS=, read -ra methods <<< "$METHODS"
  per=$(( ${WORKERS:-15} / ${#methods[@]} )); [ "$per" -ge 2 ] || per=2
  [ ! -d "$FER_BENCH_PROJECT" ] && $PY -c "from bench.fer_project import ensure_project; ensure_project()"
  mkdir -p /tmp/parts  # the parts stay there (the merge comes back): at most 8 files come back from $OUT
  parts=()
  for m in "${methods[@]}"; do
    timeout "$left" $PY -u -m bench.finetune_benchmark "${common[@]}" --methods "$m" --workers "$per" \
      --side-by-side "${#methods[@]}" \
      --json-out "/tmp/parts/$m.json" > "/tmp/parts/$m.log" 2>&1 &
    parts+=("/tmp/parts/$m.json")
  done
  wait || true
  grep -h "^N=\|Error" /tmp/parts/*.log || true
  present=(); for f in "${parts[@]}"; do [ -f "$f" ] && present+=("$f"); done
  [ "${#present[@]}" -gt 0 ] && $PY -m bench.finetune_benchmark --no-write --merge "${present[@]}" \
    --json-out "$OUT/finetune.json" > "$OUT/finetune.md"
else
  timeout "$left" $PY -u -m bench.finetune_benchmark "${common[@]}" --methods "$METHODS" --workers "${WORKERS:-12}" \
    --json-out "$OUT/finetune.json" || echo "stopped at the time budget"
  [ -f "$OUT/finetune.json" ] && $PY -m bench.finetune_benchmark --render "$OUT/finetune.json" --no-write > "$OUT/finetune.md"
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >> "$OUT/gpu.csv" || true
