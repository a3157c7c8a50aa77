#!/usr/bin/env bash
# Quick start: install the build dependencies (apt), build, and run
# `diat apply` on the bundled sample photo. Until trained models ship (see
# models/README.md) the model is the test fixture: identity transform plus a
# red tint, mask on red-dominant pixels. It shows the pipeline, not an edit.
set -euo pipefail
cd "$(dirname "$0")"
.ci/install-deps
# With the CUDA toolkit installed, the CUDA backend module is built too.
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH
[ -f build/build.ninja ] || meson setup build
ninja -C build
model=tests/data/fixture-tint-model.safetensors
out=quickstart-out
mkdir -p "$out"
build/tools/diat info "$model"
build/tools/diat detect tests/data/photos/astronaut.png
build/tools/diat apply -m "$model" --box 75,30,100,120 --no-align \
    --mask "$out/astronaut-mask.png" --overlay "$out/astronaut-overlay.png" \
    tests/data/photos/astronaut.png "$out/astronaut-edited.png"
echo "wrote $out/astronaut-edited.png, $out/astronaut-mask.png and $out/astronaut-overlay.png"
