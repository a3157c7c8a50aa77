#!/bin/bash
# The GPU machine's whole check, in one call (device tool, 15 minutes per
# issue): the CPU-vs-CUDA parity suite, the CLI on both backends, and the
# benchmarks (inference latency at batch 1; the training step at batch 64
# against PyTorch on the same GPU in the same run). Writes everything to
# $OUT/device-check.log.
#
#   tests/cuda/device-check.sh [--build]
#
# By default it runs the build made here by tests/cuda/prepare-device-run.sh
# (carried as build-cuda/, with .device/ for data and libraries); --build
# configures and builds from the clean tree there instead (needs meson,
# ninja and the -dev packages on that machine).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-/tmp/diat-device-check}
mkdir -p "$out"
exec > >(tee "$out/device-check.log") 2>&1
failures=0
section() { printf '\n==== %s (%s)\n' "$1" "$(date +%T)"; }
run() { # run NAME COMMAND...: counts a failure, never stops the script
    local start=$SECONDS
    timeout 240 "${@:2}"
    local rc=$?
    echo "---- $1: exit $rc in $((SECONDS - start)) s"
    [ $rc -eq 0 ] || [ $rc -eq 77 ] || failures=$((failures + 1))
}

section "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
nproc
# CUDA's runtime and cuBLAS: the toolkit's, else the ones PyTorch ships.
cuda_dirs=/usr/local/cuda/lib64
for lib in libcublas.so.13 libcudart.so.13; do
    found=$(ls /usr/local/cuda/lib64/$lib 2>/dev/null ||
        find / -xdev -name "$lib" 2>/dev/null | head -1)
    [ -n "$found" ] && cuda_dirs="$cuda_dirs:$(dirname "$found")"
done
export LD_LIBRARY_PATH="$root/.device/lib:$cuda_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DIAT_SOURCE_ROOT=$root DIAT_SHARED_DATA=$root/.device
build=$root/build-cuda
if [ "${1:-}" = "--build" ]; then
    section "build from the clean tree"
    build=/tmp/diat-build-cuda
    export PATH=/usr/local/cuda/bin:$PATH
    run build sh -c "meson setup $build -Dcuda=enabled -Dplugin=disabled -Dfuzz=disabled \
        && ninja -C $build"
fi
export DIAT_BUILD_ROOT=$build
run version "$build/tools/diat" version

section "parity: every op, the networks, a training step (CPU vs CUDA, FP32)"
run parity "$build/tests/cuda/test-cuda-parity"

section "diat apply on both backends"
photo=tests/data/photos/astronaut.png
model=tests/data/fixture-tint-model.safetensors
run apply-cpu "$build/tools/diat" apply -q -m $model --backend cpu --box 75,30,100,120 \
    --no-align "$photo" /tmp/apply-cpu.png
run apply-cuda "$build/tools/diat" apply -q -m $model --backend cuda --box 75,30,100,120 \
    --no-align "$photo" /tmp/apply-cuda.png
run apply-same "$build/tests/compare_images" close /tmp/apply-cpu.png /tmp/apply-cuda.png 1

section "diat-train end to end on CUDA (tests/test_train.sh with --backend cuda)"
run train-cli env DIAT_TRAIN_BACKEND=cuda bash tests/test_train.sh \
    "$build/trainer/diat-train" "$build/tools/diat" tests/data/red-square.png \
    models/face-recognition-resnet29.safetensors

section "inference latency, batch 1 (target <= 2 ms)"
run bench-inference "$build/bench/bench_inference" --backend cuda --repeats 200 --batch 64

section "training step, batch 64: engine (CUDA) and PyTorch eager (same GPU, same run)"
for round in 1 2; do
    run "bench-train-engine-$round" "$build/bench/bench_train" --backend cuda --batch 64 \
        --threads "$(nproc)" --steps 5 --warmup 2 --parts 1 --celeba "$root/.device/celeba128"
    run "bench-train-torch-$round" env -u LD_LIBRARY_PATH python3 bench/bench_train_torch.py --device cuda --batch 64 \
        --threads 4 --steps 5 --warmup 2 --parts 1
done
run bench-train-torch-tf32 env -u LD_LIBRARY_PATH python3 bench/bench_train_torch.py --device cuda --batch 64 \
    --threads 4 --steps 5 --warmup 2 --parts 0 --tf32
run bench-train-engine-tf32 env DIAT_CUDA_TF32=1 "$build/bench/bench_train" --backend cuda \
    --batch 64 --threads "$(nproc)" --steps 5 --warmup 2 --parts 0 \
    --celeba "$root/.device/celeba128"

section "summary"
grep -h "^RESULT" "$out/device-check.log" | sort | uniq -c | sed 's/^ *[0-9]* //' >"$out/results.txt"
echo "$failures step(s) failed"
exit $((failures > 0))
