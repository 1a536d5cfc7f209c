#!/usr/bin/env bash
# Install everything the project needs on a Debian machine: system packages, a virtual
# environment in .venv, and the project itself (editable) with its extras.
# Usage: bash scripts/setup.sh [extras]   e.g. bash scripts/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(python3 python3-venv python3-pip espeak-ng libportaudio2 libsndfile1
              pulseaudio pulseaudio-utils libasound2-plugins sox
              libtcmalloc-minimal4)  # tcmalloc: CPU training (training/malloc.py)
if [[ ",$extras," == *",test,"* ]]; then
  apt_packages+=(haproxy nginx-light  # tests/test_deploy.py: the shipped balancer configs
                 chromium  # tests/test_browser.py: the captions page in headless Chromium
                 fortunes flite)  # tests/test_ood.py: training text and a held-out voice
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating virtual environment .venv"
  python3 -m venv .venv
fi
py=.venv/bin/python
"$py" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "== installing torch (CPU build)"
  "$py" -m pip install -q "torch==2.13.0" || "$py" -m pip install -q torch \
    --index-url https://download.pytorch.org/whl/cpu
fi
echo "== installing the project${extras:+ [$extras]}"
"$py" -m pip install -q -e ".${extras:+[$extras]}"
# LM finals (the server's default where they can run): pyctcdecode + kenlm, installed the
# way scripts/test.sh does. kenlm compiles from source (a C++ compiler, ~1 min); where that
# fails the server still runs, with greedy finals and a one-line hint in its log.
if ! "$py" -c "import kenlm, pyctcdecode" >/dev/null 2>&1; then
  echo "== installing the LM decoder (pyctcdecode, kenlm) for LM finals"
  if ! { "$py" -m pip install -q kenlm pygtrie && "$py" -m pip install -q --no-deps pyctcdecode; \
         } >.venv/lm-install.log 2>&1; then
    echo "note: no LM finals, finals stay greedy (kenlm needs a C++ compiler, e.g." \
         "apt-get install g++; see .venv/lm-install.log)"
  fi
fi
