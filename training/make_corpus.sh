#!/usr/bin/env bash
# Build the whole synthetic corpus (text splits, valid/test sets, training audio).
# Reproducible: voice parameters are seeded by utterance id; restartable: done
# utterances are skipped.  Run from the repository root:
#   nohup nice -n 19 bash training/make_corpus.sh > training/work/corpus.log 2>&1 &
# PASS2=1 adds a second rendering of the text (new random voice parameters);
# it is optional breadth, best run while no training competes for the CPU.
# PASS3=1 then renders kal's last unrendered sentences and a second joe rendering of
# every sentence (joe, the Piper voice, is the weakest voice of the model).
# WORDNET=1 (the default when wordnet-base is installed) renders the ~40 000 WordNet
# example sentences (train-only, training/text.py), each once, by one voice in turn.
# JOE_MORE=1 has joe also speak the 16 000 WordNet sentences of kal16 and awb: new
# sentences are what joe lacks once it fits its own (training/README.md).
set -euo pipefail
W="${WORKERS:-2}"
S="python -m training.synth --workers $W"

python -m training.text

# Held-out sets first (small): every training voice + the held-out flite rms and slt voices.
for e in espeak kal16 awb kal joe ked; do
  $S --engine "$e" --split valid
  $S --engine "$e" --split test --limit 200
done
for e in rms slt; do
  $S --engine "$e" --split test --limit 200
done

# Training audio (pass 1, ~34 h), cheapest voices first so training can start early.
# Sentences are rotated (--offset) so engines with a --limit cover different text.
$S --engine espeak --split train
$S --engine kal16 --split train --limit 7500 --offset 0
$S --engine awb --split train --limit 7500 --offset 7500
$S --engine joe --split train --limit 7500 --offset 3700
$S --engine kal --split train --limit 5000 --offset 11000
$S --engine ked --split train --limit 5000 --offset 5000

# WordNet examples (~26 h): 8 000 sentences per voice, every sentence exactly once.
if [[ "${WORDNET:-1}" == "1" && -s training/work/text/train-wordnet.jsonl ]]; then
  $S --engine espeak --split train-wordnet --limit 8000 --offset 0
  $S --engine kal16 --split train-wordnet --limit 8000 --offset 8000
  $S --engine awb --split train-wordnet --limit 8000 --offset 16000
  $S --engine joe --split train-wordnet --limit 8000 --offset 24000
  $S --engine kal --split train-wordnet --limit 8200 --offset 32000
  $S --engine ked --split train-wordnet --limit 6000 --offset 12000
fi

if [[ "${JOE_MORE:-0}" == "1" && -s training/work/text/train-wordnet.jsonl ]]; then
  $S --engine joe --split train-wordnet --limit 16000 --offset 8000
fi

if [[ "${PASS2:-0}" == "1" ]]; then
  $S --engine joe --split train --limit 7500 --offset 11200
  $S --engine espeak --split train --copies 2
  $S --engine kal16 --split train --limit 7500 --offset 7500
  $S --engine awb --split train --limit 7500 --offset 0
  $S --engine kal --split train --limit 5000 --offset 1000
fi
if [[ "${PASS3:-0}" == "1" ]]; then
  $S --engine kal --split train --limit 5000 --offset 6000
  $S --engine joe --split train --copies 2
fi
echo "corpus done"
