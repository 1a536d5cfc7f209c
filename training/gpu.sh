#!/usr/bin/env bash
# Continue training the bundled model on a lent GPU for a fixed number of minutes.
#
# The GPU machine reaches no package registry and has no speech synthesizers, and only
# ~64 MB travel with a call, so prepare here (repository root, where PyPI works):
#     python -m training.pack --out training/work/packed \
#         --hours joe=1.5,kal=1.2,awb=1.0,kal16=0.8,espeak=0.6 --valid-per-engine 20
#     bash benchmarks/gpu.sh --download-wheels     # soundfile, soxr, ... as wheels in .whl/
# then, on the GPU machine, with training/work/packed and .whl/ brought along:
#     MINUTES=4 bash training/gpu.sh [RESULTS_DIR]
# It warm-starts from streaming/models/tiny-en (reading its step from the model card),
# trains with bf16 autocast, 14 loader processes and a cool-down fitted to MINUTES, and
# writes the run log, the curve and the best weights (model only, split into <=15 MB
# parts) to RESULTS_DIR (default: $OUT, else training/work/gpu-out).  Back here:
#     cat RESULTS_DIR/gpu-run.tgz.part-* | tar xzf -     # -> training/work/gpu-run/
#     python -m training.export --checkpoint training/work/gpu-run/best-model.pt
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-${OUT:-training/work/gpu-out}}"
mkdir -p "$RESULTS"
MINUTES=${MINUTES:-4}
RUN=training/work/gpu-run
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi > "$RESULTS/nvidia-smi.txt" 2>&1 || true
workers=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
timeout $(( MINUTES * 60 + 150 )) python3 -m training.train \
  --init-from streaming/models/tiny-en --corpus training/work/packed --run-dir "$RUN" \
  --device "${DEVICE:-cuda}" --loader-workers "$workers" --preload --threads 2 \
  --passes-per-epoch "${PASSES:-20}" --profile-steps "${PROFILE_STEPS:-10}" \
  --batch-seconds "${BATCH_SECONDS:-320}" --lr "${LR:-5e-3}" --fit-cooldown \
  --max-minutes "$MINUTES" --eval-minutes "${EVAL_MINUTES:-0.5}" --checkpoint-minutes 1000 \
  --export-below 0 2>&1 | tee "$RESULTS/train.log"
echo "== training exited with ${PIPESTATUS[0]}"
# best.pt holds the optimizer too (~65 MB); keep the weights and the run state only.
python3 - "$RUN" <<'EOF'
import sys, torch
run = sys.argv[1]
state = torch.load(f"{run}/best.pt", map_location="cpu", weights_only=False)
slim = {k: state[k] for k in ("model", "train_config", "model_config", "progress")}
slim["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
torch.save(slim, f"{run}/best-model.pt")
print("best step", state["progress"]["step"], "best CER", state["progress"]["best_cer"])
EOF
# The 2026-11-30 H200 run made only ~4 steps/s (1 270 audio s/s) although one loader
# process here augments ~1 500 audio s/s: the log's "data_wait" and profile.txt say
# whether the loader or the training step bounds the next run.
tar czf - "$RUN/log.jsonl" "$RUN/results" "$RUN/best-model.pt" $(ls "$RUN/profile.txt" 2>/dev/null) |
  split -b 15M - "$RESULTS/gpu-run.tgz.part-"
ls -la "$RESULTS"
