#!/bin/sh
# Evaluate the shipped attribute models on the CelebA val split with
# `diat eval`, judged by the shipped classifier, faceres and the denoiser
# (and, for Young and Male models, face-api's age and gender network):
# one JSON per model next to it (NAME.eval.json, the figures its card and
# models/README.md quote) and the Markdown rows for models/README.md on
# stdout.
#
#   models/evaluate.sh CELEBA [MODEL.safetensors ...]
#
# Without MODEL arguments every models/*.safetensors whose format is
# diat-model is evaluated. DIAT names the `diat` program (default
# build/tools/diat); FACES=N evaluates only the first N faces of each;
# SPLIT=train judges on train faces instead of val (`diat eval --split`:
# choosing among a run's --keep-exports without looking at val).
# Faces are edited as `diat apply` and the plug-in edit by default (the
# model's own mask threshold). RATIOS="0.2 0.3" adds, per model, a row for
# each mask ratio P (`diat eval --ratio P`, the plug-in's ratio slider):
# how success, identity and locality trade as the edited area grows; those
# rows go to stdout only. The val grids (`diat eval --grid`) hold CelebA
# faces, so they go to $GRID_DIR (default /tmp), never into the project.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 CELEBA [MODEL.safetensors ...]" >&2
    exit 2
fi
celeba=$1
shift
case "$celeba" in /*) ;; *) celeba=$(pwd)/$celeba ;; esac
here=$(cd "$(dirname "$0")" && pwd)
diat=${DIAT:-$here/../build/tools/diat}
case "$diat" in /*) ;; *) diat=$(pwd)/$diat ;; esac
grid_dir=${GRID_DIR:-/tmp}
# From the project's root, so the JSON files name the models and judges by
# their paths in the project (models/...), not by this machine's.
root=$(cd "$here/.." && pwd)
# The CelebA folder too, when it lies beside the project (../shared/data/...
# as DESIGN.md has it): the JSON then says where it is relative to the
# project, not on this machine.
case "$celeba" in
    "$root"/*) celeba=${celeba#"$root"/} ;;
    "$(dirname "$root")"/*) celeba=../${celeba#"$(dirname "$root")"/} ;;
esac
for model in "$@"; do
    model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
    set -- "$@" "${model#"$root"/}"
    shift
done
cd "$root"
if [ $# -eq 0 ]; then
    for file in models/*.safetensors; do
        "$diat" info "$file" 2>/dev/null | grep -q "^  format: diat-model$" && set -- "$@" "$file"
    done
fi
if [ $# -eq 0 ]; then
    echo "$0: no attribute model (format diat-model) in models/" >&2
    exit 1
fi
# evaluate MODEL [OPTION ...]: `diat eval` with the shipped judges.
evaluate() {
    eval_model=$1
    shift
    "$diat" eval -m "$eval_model" --celeba "$celeba" \
        --classifier models/attribute-classifier.safetensors \
        --denoiser models/denoiser.safetensors --faceres models/faceres.safetensors \
        --face-recognition models/face-recognition-resnet29.safetensors \
        --age-gender models/face-age-gender.safetensors \
        ${FACES:+--faces "$FACES"} ${SPLIT:+--split "$SPLIT"} "$@"
}
rows=""
for model in "$@"; do
    name=$(basename "$model" .safetensors)
    out=$(dirname "$model")/$name.eval.json
    evaluate "$model" --json "$out" --grid "$grid_dir/$name-val-grid.png" \
        >"$grid_dir/$name-eval.txt"
    cat "$grid_dir/$name-eval.txt" >&2
    rows="$rows$(tail -n 1 "$grid_dir/$name-eval.txt")
"
    for ratio in ${RATIOS:-}; do
        evaluate "$model" --ratio "$ratio" >"$grid_dir/$name-eval-$ratio.txt"
        rows="$rows$(tail -n 1 "$grid_dir/$name-eval-$ratio.txt" | sed "s/^| $name |/| $name at ratio $ratio |/")
"
    done
done
sed -n '/^Markdown row/{n;p;n;p;q}' "$grid_dir/$name-eval.txt"
printf '%s' "$rows"
