#!/usr/bin/env bash
# Fine-tune mode against head mode on a lent GPU machine (the `device` tool), one call at a time.
#
# The device machine gets this working tree but no network: it needs, as ignored paths carried
# with the call, .whl/ (the offline encoder's two wheels and SQLAlchemy for Python 3.12),
# .benchdata/fer2013.zip (FER2013 train and val folders) and .benchtext/ (the class-text
# embeddings, cached here: the MiniLM package is not on that machine). Each call
# stays under the 10-minute limit (timeout) and continues the results JSON of the previous one
# when it is carried back as .benchdata/finetune.json:
#
#   run(command="bash bench/gpu_run.sh", carry=[".whl", ".benchdata", ".benchtext"], timeout_s=600)
#
# Results land in $OUT/finetune.json and $OUT/finetune.md; render them here with
#   python -m bench.finetune_benchmark --render finetune.json
set -euo pipefail
OUT=${OUT:-/tmp/out}
BUDGET=${BUDGET:-540}  # seconds of benchmark per call, leaving time to write the results
mkdir -p "$OUT"
started=$(date +%s)

# The machine's own torch and packages; the wheels it lacks go to /tmp/site (the device README's way).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
PY=python3
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

DATA=/tmp/fer-data
if [ ! -d "$DATA/fer2013/train" ]; then
  mkdir -p "$DATA" && unzip -q .benchdata/fer2013.zip -d "$DATA"
fi
export FER_SHARED_DATA=$DATA FER_BENCH_PROJECT=/tmp/fer-bench-project HF_HUB_OFFLINE=1
$PY -m bench.fer_project  # import and feature cache, once per machine

resume=()
[ -f .benchdata/finetune.json ] && resume=(--resume-json .benchdata/finetune.json)
left=$(( BUDGET - ($(date +%s) - started) ))
timeout "$left" $PY -u -m bench.finetune_benchmark --no-write --json-out "$OUT/finetune.json" "${resume[@]}" \
  --text-cache .benchtext --seeds "${SEEDS:-0}" --labels "${LABELS:-25,100}" --workers "${WORKERS:-12}" || echo "stopped at the time budget"
[ -f "$OUT/finetune.json" ] && $PY -m bench.finetune_benchmark --render "$OUT/finetune.json" --no-write > "$OUT/finetune.md"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$OUT/gpu.csv" || true
