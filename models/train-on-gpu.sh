#!/bin/bash
# One training run on the GPU machine (device tool), in one call: train DIAT
# for a time budget against the shipped denoiser, export the F16 model, and
# leave the model, the run's log.csv, its loss plot, its last sample grid and
# an F16 export of every 2,000th step (--keep-exports, in NAME-exports/) in
# $OUT (the files that come back): GAN runs swing, so the step to ship is
# chosen afterwards with `diat eval --split train`.
#
#   models/train-on-gpu.sh CELEBA ATTRIBUTE DIRECTION NAME SECONDS [INIT_FROM]
#
# CELEBA is a carried CelebA folder (tests/cuda/make-device-data.sh makes a
# subset; CelebA is never committed). INIT_FROM, a shipped model such as
# models/remove-eyeglasses.safetensors, continues its T and M with a fresh
# critic (diat-train --init-from: the critic warms up first); a model of a
# related edit is a start too (--init-other-edit: add-smile for open-mouth
# or remove-smile, trained here to 65-80% success in 1,000 CPU steps). Needs the
# build from tests/cuda/prepare-device-run.sh (build-cuda/ and .device/lib
# carried).
set -eu
if [ $# -ne 5 ] && [ $# -ne 6 ]; then
    echo "usage: $0 CELEBA ATTRIBUTE DIRECTION NAME SECONDS [INIT_FROM]" >&2
    exit 2
fi
celeba=$1 attribute=$2 direction=$3 name=$4 seconds=$5 init_from=${6:-}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-/tmp/diat-gpu-run}
mkdir -p "$out"
lib_dirs=/usr/local/cuda/lib64
for lib in libcublas.so.13 libcudart.so.13; do
    found=$(ls /usr/local/cuda/lib64/$lib 2>/dev/null || find / -xdev -name "$lib" 2>/dev/null | head -1)
    [ -n "$found" ] && lib_dirs="$lib_dirs:$(dirname "$found")"
done
export LD_LIBRARY_PATH="$root/.device/lib:$lib_dirs"
train=build-cuda/trainer/diat-train
work=$(mktemp -d)
init=()
[ -z "$init_from" ] || init=(--init-from "$init_from" --init-other-edit)

echo "== DIAT $attribute $direction, $seconds s ($(date +%T))${init_from:+, from $init_from}"
"$train" transfer --run-dir "$work/run" --celeba "$celeba" --backend cuda \
    --threads "$(nproc)" --batch 64 --quiet --attribute "$attribute" --direction "$direction" \
    --denoiser models/denoiser.safetensors "${init[@]}" --steps 1000000 \
    --max-time "$seconds" --sample-every 500 --checkpoint-every 2000 --keep-exports
"$train" --run-dir "$work/run" --export "$out/$name.safetensors" --f16
cp "$work/run/log.csv" "$out/$name-log.csv"
cp "$work/run/loss.png" "$out/$name-loss.png"
last=$(ls "$work/run/samples" | tail -1)
[ -z "$last" ] || cp "$work/run/samples/$last" "$out/$name-samples.png"
cp -r "$work/run/exports" "$out/$name-exports"
echo "== done ($(date +%T)): $(wc -l <"$work/run/log.csv") log rows; $(ls -la "$out" | wc -l) files"
