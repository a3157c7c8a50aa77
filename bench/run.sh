#!/bin/sh
# Run the engine's inference benchmark and PyTorch's on the same random
# model, in the same run, and print the speed ratio.
#
#   bench/run.sh [PATH/TO/bench_inference] [--threads N] [--rounds N]
#                [--repeats N] [--batch N]
#
# `ninja -C build bench` calls this with the built bench_inference. Without a
# path, build/bench/bench_inference is used. The PyTorch side needs Debian's
# /usr/bin/python3 with python3-torch (PYTHON overrides); without it only the
# engine is measured.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bench=""
case "${1:-}" in
    --*|"") bench="$here/../build/bench/bench_inference" ;;
    *) bench=$1; shift ;;
esac
threads=1
rounds=3
extra=""
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --repeats|--batch) extra="$extra $1 $2"; shift 2 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
python=${PYTHON:-/usr/bin/python3}
[ -x "$bench" ] || { echo "run.sh: $bench not built (ninja -C build)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/diat-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
model="$work/random.safetensors"

have_torch=0
if "$python" -c 'import torch' >/dev/null 2>&1; then have_torch=1; fi
# The reference writes the model (non-trivial batch-norm statistics); the
# file-format part needs only numpy.
if "$python" "$here/diat_reference.py" --make-random-model "$model" 24 16 0 F32 2>/dev/null; then
    model_args="--model $model"
else
    model_args=""
    have_torch=0
fi

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $threads thread(s), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== engine: $bench"
# Rounds alternate engine and PyTorch so a burst of other load on this
# machine hits both sides; the best median of each side is compared. The
# full tables printed are those of the quietest round: the one whose FMA
# peak, measured by bench_inference as it starts, came out highest.
value() { sed -n "s/^RESULT $1=//p" "$2" | head -n 1; }
best() { # best (largest) value of a key across files
    key=$1; shift
    for f in "$@"; do value "$key" "$f"; done | sort -g | tail -n 1
}
round=1
while [ "$round" -le "$rounds" ]; do
    # shellcheck disable=SC2086
    "$bench" --threads "$threads" $model_args $extra >"$work/ours-$round.txt"
    if [ "$have_torch" -eq 1 ]; then
        # shellcheck disable=SC2086
        "$python" "$here/bench_torch.py" --threads "$threads" $model_args $extra \
            >"$work/torch-$round.txt"
    fi
    round=$((round + 1))
done
quietest=1
round=1
while [ "$round" -le "$rounds" ]; do
    if awk -v a="$(value measured_fma_peak_per_core_gflops "$work/ours-$round.txt")" \
        -v b="$(value measured_fma_peak_per_core_gflops "$work/ours-$quietest.txt")" \
        'BEGIN { exit !(a > b) }'; then
        quietest=$round
    fi
    round=$((round + 1))
done
echo "== round $quietest of $rounds (the quietest):"
cat "$work/ours-$quietest.txt"
if [ "$have_torch" -eq 1 ]; then
    echo
    echo "== PyTorch: $python $here/bench_torch.py (round $quietest)"
    cat "$work/torch-$quietest.txt"
fi
if [ "$have_torch" -eq 0 ]; then
    echo "== PyTorch not importable by $python: no comparison"
    exit 0
fi

echo
echo "== per round: engine vs PyTorch images/s at batch 1 (T+M forward), FMA peak measured"
round=1
while [ "$round" -le "$rounds" ]; do
    awk -v r="$round" -v o="$(value nets_batch1_images_per_s "$work/ours-$round.txt")" \
        -v t="$(value torch_batch1_images_per_s "$work/torch-$round.txt")" \
        -v p="$(value measured_fma_peak_per_core_gflops "$work/ours-$round.txt")" \
        'BEGIN { printf "round %d: ours %7.1f  PyTorch %7.1f  ratio %.2fx  (FMA peak now %.0f GFLOP/s)\n", r, o, t, o / t, p }'
    round=$((round + 1))
done

echo
echo "== ours vs PyTorch, best of $rounds round(s) each (images/s; ratio > 1: the engine is faster)"
for key in batch1 batch16; do
    ours=$(best "nets_${key}_images_per_s" "$work"/ours-*.txt)
    theirs=$(best "torch_${key}_images_per_s" "$work"/torch-*.txt)
    if [ -z "$ours" ] || [ -z "$theirs" ]; then continue; fi
    awk -v k="$key" -v o="$ours" -v t="$theirs" \
        'BEGIN { printf "%-8s ours %8.1f  PyTorch %8.1f  ratio %.2fx\n", k, o, t, o / t }'
done
ours=$(best edit_batch1_images_per_s "$work"/ours-*.txt)
theirs=$(best torch_batch1_images_per_s "$work"/torch-*.txt)
awk -v o="$ours" -v t="$theirs" \
    'BEGIN { printf "%-8s ours %8.1f  PyTorch %8.1f  ratio %.2fx  (through diat_edit_new_face)\n", "batch1", o, t, o / t }'
ours=$(best conv_T_batch1_gflops "$work"/ours-*.txt)
theirs=$(best torch_conv_T_batch1_gflops "$work"/torch-*.txt)
awk -v o="$ours" -v t="$theirs" \
    'BEGIN { printf "T convolutions, batch 1: ours %.1f GFLOP/s (%.1f%% of 169), PyTorch %.1f GFLOP/s (%.1f%%)\n", o, 100 * o / 169, t, 100 * t / 169 }'
exit 0
