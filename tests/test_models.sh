#!/bin/bash
# The shipped attribute models (models/*.safetensors whose format is
# diat-model), as a user meets them: each loads, states what it is and how
# it was trained, has its card and its evaluation, and edits a real photo
# only where its mask says.
#
#   test_models.sh DIAT COMPARE_IMAGES MODELS_DIR PHOTOS_DIR
#
# Prints one line per check and "N passed, N failed"; exits 77 (skipped)
# when no attribute model ships.
set -u
if [ $# -ne 4 ]; then
    echo "usage: $0 DIAT COMPARE_IMAGES MODELS_DIR PHOTOS_DIR" >&2
    exit 2
fi
DIAT=$1 CMP=$2 MODELS=$3 PHOTOS=$4
WORK=$(mktemp -d "${TMPDIR:-/tmp}/diat-models.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
. "$(dirname "$0")/checks.sh"

models=()
for file in "$MODELS"/*.safetensors; do
    "$DIAT" info "$file" 2>/dev/null | grep -q "^  format: diat-model$" && models+=("$file")
done
if [ ${#models[@]} -eq 0 ]; then
    echo "skipped: no attribute model in $MODELS"
    exit 77
fi

# metadata KEY: the value of KEY in the model's `diat info` (in $WORK/info).
metadata() { sed -n "s/^  $1: //p" "$WORK/info"; }

for model in "${models[@]}"; do
    name=$(basename "$model" .safetensors)
    "$DIAT" info "$model" >"$WORK/info" 2>&1
    attribute=$(metadata attribute) direction=$(metadata direction) p=$(metadata default_ratio)
    case "$attribute" in
    Eyeglasses | Mouth_Slightly_Open | Smiling | Young | Male)
        pass "$name: edits $direction $attribute" ;;
    *) fail "$name: a CelebA attribute of the issue (got '$attribute')" ;;
    esac
    expect_ok "$name: at most 10 MB" test "$(stat -c %s "$model")" -le 10485760
    expect_ok "$name: F16 weights" grep -q "^  T.down1.weight  *F16 " "$WORK/info"
    expect_ok "$name: mask ratio p in (0, 1)" awk -v p="$p" 'BEGIN { exit !(p > 0 && p < 1) }'
    expect_ok "$name: states its training" grep -Eq "^  training_settings: lambda_gp=.* n_critic=" \
        "$WORK/info"
    expect_ok "$name: states CelebA's terms" grep -qi "^  license: .*non-commercial" "$WORK/info"
    steps=$(metadata training_iterations)
    # The card describes this file: its name and its step count.
    card=$MODELS/$name.md
    expect_ok "$name: card names the file" grep -q "$name.safetensors" "$card"
    grouped=$(printf %s "$steps" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta') # 1874 -> 1,874
    expect_ok "$name: card gives the steps ($grouped)" grep -qF -e "$steps" -e "$grouped" "$card"
    # Its evaluation: the whole val side, of this model, edited as users get
    # it by default (the model's own mask threshold), against its p.
    json=$MODELS/$name.eval.json
    expect_ok "$name: evaluation of this model on its whole val side" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
s = j["settings"]
assert j["format"] == "diat-eval", j["format"]
assert s["model"].endswith(sys.argv[2] + ".safetensors"), s["model"]
assert s["faces"] == s["faces_on_side"] > 0, (s["faces"], s["faces_on_side"])
assert s["ratio"] is None, s["ratio"]
assert abs(j["locality"]["p"] - float(sys.argv[3])) < 1e-6, j["locality"]["p"]
assert s["attribute"] == sys.argv[4] and s["direction"] == sys.argv[5]
' "$json" "$name" "$p" "$attribute" "$direction"
    # A real photo (not CelebA): every detected face edited as `diat apply`
    # edits by default, and only under the mask; the rest bit for bit the
    # input.
    photo=$PHOTOS/2008_001009.png
    out=$WORK/$name.png
    expect_ok "$name: edits a photo" "$DIAT" apply -q -m "$model" \
        --mask "$WORK/$name-mask.png" "$photo" "$out"
    expect_ok "$name: only masked pixels change, and they do" "$CMP" untouched "$photo" "$out" \
        "$WORK/$name-mask.png" --expect-change
done

summary
