#!/bin/sh
# Time one DIAT training step (5 WGAN-GP critic steps + 1 generator step,
# batch 16, diat-train's defaults) in the engine's trainer and in PyTorch,
# in the same run, and print the ratio of images/s.
#
#   bench/run-train.sh [PATH/TO/bench_train] [--threads N] [--rounds N]
#                      [--steps N] [--warmup N] [--parts N] [--layers N]
#                      [--batch N] [--celeba DIR]
#
# `ninja -C build bench-train` calls this with the built bench_train.
# Without a path, build/bench/bench_train is used. Rounds alternate the
# engine and PyTorch so a burst of other load hits both; the per-part tables
# (--parts, default 2) and the single-convolution tables (--layers, default
# 2; 0 skips them) are taken in the first round only. The PyTorch side
# needs Debian's /usr/bin/python3 with python3-torch (PYTHON overrides);
# without it only the engine is measured.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bench=""
case "${1:-}" in
    --*|"") bench="$root/build/bench/bench_train" ;;
    *) bench=$1; shift ;;
esac
threads=1
rounds=3
steps=5
warmup=1
parts=2
layers=2
batch=16
celeba="$root/../shared/data/celeba128"
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --parts) parts=$2; shift 2 ;;
        --layers) layers=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --celeba) celeba=$2; shift 2 ;;
        *) echo "run-train.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
python=${PYTHON:-/usr/bin/python3}
[ -x "$bench" ] || { echo "run-train.sh: $bench not built (ninja -C build)" >&2; exit 1; }
[ -d "$celeba" ] || { echo "run-train.sh: no CelebA data at $celeba (--celeba DIR)" >&2; exit 1; }
phi="$root/models/face-recognition-resnet29.safetensors"

work=$(mktemp -d "${TMPDIR:-/tmp}/diat-bench-train-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

have_torch=0
if "$python" -c 'import torch' >/dev/null 2>&1; then have_torch=1; fi

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, $threads thread(s), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== engine: $bench"
value() { sed -n "s/^RESULT $1=//p" "$2" | head -n 1; }
best_max() { key=$1; shift; for f in "$@"; do value "$key" "$f"; done | sort -g | tail -n 1; }
best_min() { key=$1; shift; for f in "$@"; do value "$key" "$f"; done | sort -g | head -n 1; }

round=1
while [ "$round" -le "$rounds" ]; do
    round_parts=0
    round_layers=0
    if [ "$round" -eq 1 ]; then round_parts=$parts; round_layers=$layers; fi
    "$bench" --threads "$threads" --steps "$steps" --warmup "$warmup" --batch "$batch" \
        --parts "$round_parts" --layers "$round_layers" --celeba "$celeba" --face-recognition "$phi" \
        >"$work/ours-$round.txt"
    if [ "$have_torch" -eq 1 ]; then
        # shellcheck disable=SC2086
        "$python" "$here/bench_train_torch.py" --threads "$threads" --steps "$steps" \
            --warmup "$warmup" --batch "$batch" --parts "$round_parts" --layers "$round_layers" \
            --face-recognition "$phi" >"$work/torch-$round.txt"
    fi
    echo "   round $round of $rounds done"
    round=$((round + 1))
done

echo "== round 1, engine:"
grep -v '^RESULT ' "$work/ours-1.txt"
if [ "$have_torch" -eq 0 ]; then
    echo "== PyTorch not importable by $python: no comparison"
    exit 0
fi
echo
echo "== round 1, PyTorch: $python $here/bench_train_torch.py"
grep -v '^RESULT ' "$work/torch-1.txt"

echo
echo "== per round: images/s (generator images, batch $batch) and step seconds"
round=1
while [ "$round" -le "$rounds" ]; do
    awk -v r="$round" -v o="$(value images_per_s "$work/ours-$round.txt")" \
        -v t="$(value torch_images_per_s "$work/torch-$round.txt")" \
        -v oc="$(value critic_step_s "$work/ours-$round.txt")" \
        -v tc="$(value torch_critic_step_s "$work/torch-$round.txt")" \
        -v og="$(value generator_step_s "$work/ours-$round.txt")" \
        -v tg="$(value torch_generator_step_s "$work/torch-$round.txt")" \
        'BEGIN { printf "round %d: ours %6.2f  PyTorch %6.2f  ratio %.2fx   critic step %.3f / %.3f s, generator step %.3f / %.3f s\n", r, o, t, o / t, oc, tc, og, tg }'
    round=$((round + 1))
done

echo
echo "== ours vs PyTorch, best of $rounds round(s) each (ratio > 1: the engine is faster; target >= 1.5x)"
ours=$(best_max images_per_s "$work"/ours-*.txt)
theirs=$(best_max torch_images_per_s "$work"/torch-*.txt)
awk -v o="$ours" -v t="$theirs" -v n="$batch" \
    'BEGIN { printf "step      ours %6.2f images/s (%.3f s)  PyTorch %6.2f images/s (%.3f s)  ratio %.2fx\n", o, n / o, t, n / t, o / t }'
ours=$(best_min critic_step_s "$work"/ours-*.txt)
theirs=$(best_min torch_critic_step_s "$work"/torch-*.txt)
awk -v o="$ours" -v t="$theirs" \
    'BEGIN { printf "critic    ours %.3f s  PyTorch %.3f s per critic step  ratio %.2fx\n", o, t, t / o }'
ours=$(best_min generator_step_s "$work"/ours-*.txt)
theirs=$(best_min torch_generator_step_s "$work"/torch-*.txt)
awk -v o="$ours" -v t="$theirs" \
    'BEGIN { printf "generator ours %.3f s  PyTorch %.3f s per generator step  ratio %.2fx\n", o, t, t / o }'
ours=$(best_min step_cpu_s "$work"/ours-*.txt)
theirs=$(best_min torch_step_cpu_s "$work"/torch-*.txt)
awk -v o="$ours" -v t="$theirs" -v th="$threads" \
    'BEGIN { printf "CPU time  ours %.3f s  PyTorch %.3f s per step, all threads  ratio %.2fx%s\n", o, t, t / o, th == 1 ? "  (at one thread: the figure least moved by other load)" : "" }'
exit 0
