#!/bin/sh
# Here, before a device call: build the project with the CUDA backend into
# build-cuda/, and gather what the GPU machine lacks into .device/ (a CelebA
# subset and the few shared libraries the build links that the machine's
# CUDA image may not have). Both folders are git-ignored; the device call
# names them in `carry` and runs tests/cuda/device-check.sh.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PATH=/usr/local/cuda/bin:$PATH
start=$(date +%s)
[ -d build-cuda ] || meson setup build-cuda -Dcuda=enabled -Dplugin=disabled -Dfuzz=disabled
ninja -C build-cuda
echo "build-cuda: built in $(($(date +%s) - start)) s here"
[ -d .device/celeba128 ] || tests/cuda/make-device-data.sh
# Every library the binaries need apart from the C runtime and CUDA's own.
rm -rf .device/lib && mkdir -p .device/lib
for binary in build-cuda/tests/cuda/test-cuda-parity build-cuda/bench/bench_train \
    build-cuda/bench/bench_inference build-cuda/tools/diat build-cuda/trainer/diat-train; do
    ldd "$binary"
done | awk '$3 ~ /^\// { print $3 }' | sort -u |
    grep -v "^$root/" | grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libz|libstdc\+\+|libcuda[^/]*|libcudart[^/]*|libcublas[^/]*)\.so' |
    while read -r lib; do cp -L "$lib" .device/lib/; done
echo ".device: $(du -sh .device | cut -f1) ($(ls .device/lib | wc -l) libraries)"
