#!/bin/bash
# End-to-end tests of `diat eval` on CelebA val faces (../shared/data).
#
#   test_eval.sh DIAT MAKE_FIXTURE FIXTURE_MODEL TINT_MODEL [DIAT_TRAIN]
#
# The identity fixture (tools/make-fixture-model.c: T is exactly the
# identity) must measure as "nothing happened": every judge says the same of
# input and result, distances 0, PSNR at its cap, SSIM 1. The tint fixture
# must measure as a change. With DIAT_TRAIN (the trainer is built), a tiny
# classifier and denoiser are trained here; without it, or before `diat-train
# classifier` exists, a fixture classifier with seeded random weights stands
# in (its verdicts mean nothing, but the checks hold for any judge) and the
# denoiser's figures are left out. Then errors for bad inputs.
#
# Skips (exit 77) when the CelebA folder is absent. Prints "N passed, N failed".
set -u
if [ $# -lt 4 ] || [ $# -gt 5 ]; then
    echo "usage: $0 DIAT MAKE_FIXTURE FIXTURE TINT [DIAT_TRAIN]" >&2
    exit 2
fi
DIAT=$1 MAKE=$2 FIXTURE=$3 TINT=$4 TRAIN=${5:-}
CELEBA=${DIAT_SHARED_DATA:-../shared/data}/celeba128
if [ ! -f "$CELEBA/list_attr_celeba.txt" ]; then
    echo "SKIP: no CelebA at $CELEBA"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/diat-eval.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT

. "$(dirname "$0")/checks.sh"
# expect_error NAME STATUS WORD CMD...: that exit status and one "diat:
# error:" line containing WORD.
expect_error() {
    local name=$1 want=$2 word=$3; shift 3; run "$@"
    if [ $rc -eq "$want" ] && [ "$(grep -c '^diat: error: ' "$WORK/stderr")" -eq 1 ] &&
        grep -qi -- "$word" "$WORK/stderr"; then pass "$name"
    else fail "$name (exit $rc, wanted $want and '$word')"; fi
}
# json_check NAME FILE PYTHON [DEFINITIONS]: the expression, with j the parsed
# file (and the Python DEFINITIONS run first), is true.
json_check() {
    local program='import json, sys
'"${4:-}"'
j = json.load(open(sys.argv[1]))
sys.exit(0 if ('"$3"') else 1)'
    if python3 -c "$program" "$2" >"$WORK/stdout" 2>&1; then pass "$1"
    else fail "$1"; python3 -m json.tool "$2" 2>&1 | sed 's/^/     json: /' | head -60; fi
}

THREADS=(-t 2 -q)
# ---- the judges: a classifier (and a denoiser) ----
CLS=$WORK/classifier.safetensors DN=$WORK/denoiser.safetensors
if [ -n "$TRAIN" ] && "$TRAIN" --help 2>&1 | grep -q 'diat-train classifier'; then
    expect_ok "diat-train classifier trains (width 4, 30 steps)" "$TRAIN" classifier \
        --celeba "$CELEBA" --run-dir "$WORK/cls" --width 4 --batch 8 --steps 30 --threads 2 --quiet
    expect_ok "diat-train exports the classifier" "$TRAIN" --run-dir "$WORK/cls" --export "$CLS"
else
    echo "note: no \`diat-train classifier\`: a random fixture classifier stands in"
    expect_ok "fixture classifier" "$MAKE" classifier "$CLS" \
        Eyeglasses,Mouth_Slightly_Open,Smiling,Young,Male
fi
DN_ARGS=()
if [ -n "$TRAIN" ]; then
    expect_ok "diat-train denoiser trains (20 steps)" "$TRAIN" denoiser --celeba "$CELEBA" \
        --run-dir "$WORK/dn" --denoiser-width 8 --denoiser-depth 3 --batch 4 --steps 20 --quiet \
        --threads 2
    expect_ok "diat-train exports the denoiser" "$TRAIN" --run-dir "$WORK/dn" --export "$DN"
    DN_ARGS=(--denoiser "$DN")
else
    echo "note: no trainer: the denoiser's figures are not checked"
fi
HAVE_DN=$([ ${#DN_ARGS[@]} -gt 0 ] && echo True || echo False)

# ---- the identity fixture: nothing changes, and every figure says so ----
EVAL=(--celeba "$CELEBA" --classifier "$CLS" "${DN_ARGS[@]}" "${THREADS[@]}")
expect_ok "identity fixture, add Male, 50 faces" "$DIAT" eval -m "$FIXTURE" "${EVAL[@]}" \
    --attribute Male --faces 50 --json "$WORK/identity.json" --grid "$WORK/identity.png"
cp "$WORK/stdout" "$WORK/identity.txt"
KEYS='
settings: model label attribute direction ratio ratio_source celeba split faces_requested
  faces_on_side split_faces faces classifier denoiser faceres face_recognition backend age_gender
thresholds: classifier faceres_distance dlib_distance faceres_male faceres_young_age psnr_cap_db
  face_api_young_age
attribute: classifier_success classifier_success_ci95 classifier_baseline
  classifier_mean_p_results classifier_mean_p_sources faceres_rule faceres_success
  faceres_success_ci95 faceres_baseline faceres_mean_results faceres_mean_sources face_api_rule
  face_api_success face_api_success_ci95 face_api_baseline face_api_mean_results
  face_api_mean_sources face_api_unframed_faces
identity: faceres_verification faceres_verification_ci95 faceres_mean_distance dlib_mean_distance
  dlib_below_threshold
locality: mask_area mask_area_model_threshold p psnr_db ssim unchanged_faces
quality: artifact_results artifact_sources'
KEYS_PY=$(echo "$KEYS" | awk '
    /:/ { sub(":", "", $1); group = $1; $1 = "" }
    { for (i = 1; i <= NF; i++) if ($i != "") printf "(\"%s\", \"%s\"), ", group, $i }')
json_check "JSON parses and holds every key" "$WORK/identity.json" \
    "j['format'] == 'diat-eval' and all(k in j[g] for g, k in [$KEYS_PY])"
json_check "settings: 50 faces without Male, add, cut at the model's e > 0.5 (as apply)" \
    "$WORK/identity.json" \
    "j['settings']['faces'] == 50 and j['settings']['direction'] == 'add' and
     j['settings']['attribute'] == 'Male' and j['settings']['ratio'] is None and
     j['settings']['ratio_source'].startswith(\"the model's own threshold\") and
     j['settings']['split'] == 'val' and j['settings']['faces_on_side'] > 2000"
json_check "identity: verification 100%, distances 0" "$WORK/identity.json" \
    "j['identity']['faceres_verification'] == 1 and j['identity']['faceres_mean_distance'] == 0
     and j['identity']['dlib_mean_distance'] == 0 and j['identity']['dlib_below_threshold'] == 1"
# 50 of 50: Wilson's interval is [n / (n + z^2), 1], not the empty [1, 1]
# the normal approximation gives.
json_check "identity: verification's 95% interval at 50 of 50 is [0.9287, 1]" \
    "$WORK/identity.json" "abs(j['identity']['faceres_verification_ci95'][0] - 50 / (50 + 1.96**2))
     < 1e-9 and j['identity']['faceres_verification_ci95'][1] == 1"
json_check "identity: PSNR at its cap (identical), SSIM 1, every face unchanged" \
    "$WORK/identity.json" "j['locality']['psnr_db'] == j['thresholds']['psnr_cap_db'] == 100
     and j['locality']['ssim'] == 1 and j['locality']['unchanged_faces'] == 50"
json_check "identity: attribute success equals the baseline" "$WORK/identity.json" \
    "j['attribute']['classifier_success'] == j['attribute']['classifier_baseline'] and
     j['attribute']['classifier_mean_p_results'] == j['attribute']['classifier_mean_p_sources']
     and j['attribute']['faceres_rule'] == 'P(male) > 0.5' and
     j['attribute']['faceres_success'] == j['attribute']['faceres_baseline'] and
     j['attribute']['face_api_rule'] == 'P(male) > 0.5' and
     j['attribute']['face_api_success'] == j['attribute']['face_api_baseline'] and
     j['attribute']['face_api_mean_results'] == j['attribute']['face_api_mean_sources']"
# The sources are 50 women: both second opinions must see that (face-api's
# P(male) > 0.5 is right on 96% of val faces, faceres's on 98%), and
# face-api's detector frames every face.
json_check "identity: faceres and face-api judge the 50 women female" "$WORK/identity.json" \
    "j['attribute']['faceres_baseline'] < 0.2 and j['attribute']['face_api_baseline'] < 0.2 and
     j['attribute']['face_api_mean_sources'] < 0.3 and
     j['attribute']['face_api_unframed_faces'] == 0 and
     j['settings']['age_gender'].endswith('face-age-gender.safetensors') and
     j['thresholds']['face_api_young_age'] == 40"
json_check "identity: artifacts of results equal the sources'" "$WORK/identity.json" \
    "(j['quality']['artifact_results'] == j['quality']['artifact_sources'] and
      j['quality']['artifact_results'] > 0) if $HAVE_DN
     else j['quality']['artifact_results'] is None"
json_check "identity: mask area at the model's threshold, against its p 0.1" "$WORK/identity.json" \
    "abs(j['locality']['mask_area'] - j['locality']['mask_area_model_threshold']) < 1e-6 and
     0 < j['locality']['mask_area'] < 1 and j['locality']['p'] == 0.1"
table_says_identical() {
    grep -Eq '^ +PSNR, whole face +inf' "$WORK/identity.txt" &&
        grep -q '^| fixture-model | add Male | 50 | 0.100 |.* | inf | 1.0000 |' "$WORK/identity.txt"
}
check "table and Markdown row: PSNR inf, SSIM 1" table_says_identical
# Three rows of eight 128-pixel tiles with 4-pixel gaps: 1060 x 400.
PNG_SIZE='import struct, sys; d = open(sys.argv[1], "rb").read(32)
sys.exit(d[:8] != b"\x89PNG\r\n\x1a\n" or struct.unpack(">II", d[16:24]) != (1060, 400))'
check "grid: 8 faces x 3 rows PNG" python3 -c "$PNG_SIZE" "$WORK/identity.png"

# ---- the tint fixture: a change, and the figures see it ----
expect_ok "tint fixture, add Male, 50 faces" "$DIAT" eval -m "$TINT" "${EVAL[@]}" --attribute Male \
    --faces 50 --json "$WORK/tint.json"
json_check "tint: PSNR and SSIM drop" "$WORK/tint.json" \
    "10 < j['locality']['psnr_db'] < 60 and 0.5 < j['locality']['ssim'] < 1 and
     j['locality']['unchanged_faces'] < 50"
json_check "tint: the judges see a change" "$WORK/tint.json" \
    "j['identity']['dlib_mean_distance'] > 0 and j['identity']['faceres_mean_distance'] > 0 and
     j['attribute']['classifier_mean_p_results'] != j['attribute']['classifier_mean_p_sources']
     and j['attribute']['face_api_mean_results'] != j['attribute']['face_api_mean_sources']"
# Each interval is Wilson's score interval of its count, recomputed here from
# the rate and the number of faces, and holds the rate.
WILSON='def wilson(rate, n, z=1.96):
    k = round(rate * n)
    r = k / n
    centre = (r + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (r * (1 - r) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return (0 if k == 0 else centre - half, 1 if k == n else centre + half)
def agrees(rate, bounds, n):
    return (all(abs(a - b) < 1e-9 for a, b in zip(wilson(rate, n), bounds))
            and bounds[0] <= rate <= bounds[1] and bounds[1] - bounds[0] > 0.05)'
json_check "tint: each 95% interval is Wilson's and holds its rate" "$WORK/tint.json" \
    "all(agrees(j[g][k], j[g][k + '_ci95'], j['settings']['faces']) for g, k in
         [('attribute', 'classifier_success'), ('attribute', 'faceres_success'),
          ('attribute', 'face_api_success'), ('identity', 'faceres_verification')])" "$WILSON"
check "table: the 95% interval under each rate" grep -Eq '^ +95% interval \(Wilson\) +[0-9.]+-[0-9.]+$' \
    "$WORK/identity.txt"

# ---- a remove model: the side with the attribute, no optional judges ----
EYE=$(sed -n 2p "$CELEBA/list_attr_celeba.txt" | tr -s ' \t' '\n' | grep -v '^$' |
    grep -nx Eyeglasses | cut -d: -f1)
WITH_GLASSES=$(awk -v c=$((EYE + 1)) 'NR == FNR { if ($2 == 1) val[$1] = 1; next }
    FNR > 2 && ($1 in val) && $c == 1 { n++ } END { print n + 0 }' \
    "$CELEBA/list_eval_partition.txt" "$CELEBA/list_attr_celeba.txt")
expect_ok "identity fixture, remove Eyeglasses, --ratio 0.3" "$DIAT" eval -m "$FIXTURE" \
    --celeba "$CELEBA" --attribute Eyeglasses --direction remove --ratio 0.3 --faces 10 \
    "${THREADS[@]}" --json "$WORK/remove.json"
json_check "remove: the $WITH_GLASSES val faces with Eyeglasses are the side" "$WORK/remove.json" \
    "j['settings']['faces_on_side'] == $WITH_GLASSES and j['settings']['direction'] == 'remove'
     and j['settings']['ratio'] == 0.3 and j['settings']['ratio_source'] == '--ratio'"
json_check "remove: unmeasured figures are null" "$WORK/remove.json" \
    "j['settings']['classifier'] is None and j['attribute']['classifier_success'] is None and
     j['attribute']['classifier_success_ci95'] is None and
     j['attribute']['faceres_success_ci95'] is None and
     j['attribute']['faceres_rule'] is None and j['quality']['artifact_sources'] is None and
     j['attribute']['face_api_rule'] is None and j['attribute']['face_api_success'] is None and
     j['settings']['age_gender'] is None"
json_check "remove: mask area follows --ratio" "$WORK/remove.json" \
    "abs(j['locality']['mask_area'] - 0.3) < 0.02 and j['locality']['p'] == 0.1"

# ---- errors ----
BASE=(-m "$FIXTURE" --celeba "$CELEBA" --attribute Male "${THREADS[@]}" --faces 2)
expect_error "missing classifier file" 1 nowhere.safetensors "$DIAT" eval "${BASE[@]}" \
    --classifier "$WORK/nowhere.safetensors"
"$MAKE" classifier "$WORK/smiling.safetensors" Smiling
expect_error "classifier lacking the attribute" 2 "judges Smiling, not Male" "$DIAT" eval \
    "${BASE[@]}" --classifier "$WORK/smiling.safetensors"
head -c 3000 "$CLS" >"$WORK/truncated.safetensors"
expect_error "truncated classifier" 1 truncated.safetensors "$DIAT" eval "${BASE[@]}" \
    --classifier "$WORK/truncated.safetensors"
expect_error "a model is no classifier" 1 "not an attribute classifier" "$DIAT" eval "${BASE[@]}" \
    --classifier "$FIXTURE"
expect_error "a classifier is no denoiser" 1 "not a denoiser" "$DIAT" eval "${BASE[@]}" \
    --denoiser "$CLS"
expect_error "a classifier is no age and gender network" 1 "--model age-gender" "$DIAT" eval \
    "${BASE[@]}" --age-gender "$CLS"
expect_error "fixture's attribute is not CelebA's" 2 TestFixture "$DIAT" eval -m "$FIXTURE" \
    --celeba "$CELEBA" "${THREADS[@]}"
expect_error "attribute in the wrong case" 2 "did you mean 'Eyeglasses'" "$DIAT" eval \
    -m "$FIXTURE" --celeba "$CELEBA" --attribute eyeglasses "${THREADS[@]}"
expect_error "missing CelebA folder" 1 "$WORK/nowhere" "$DIAT" eval -m "$FIXTURE" \
    --celeba "$WORK/nowhere" --attribute Male
expect_error "missing model" 1 nomodel.safetensors "$DIAT" eval -m "$WORK/nomodel.safetensors" \
    --celeba "$CELEBA"
cp "$FIXTURE" "$WORK/model-copy.safetensors"
expect_error "refuses to write over an input" 2 "overwrite an input" "$DIAT" eval \
    -m "$WORK/model-copy.safetensors" --celeba "$CELEBA" --json "$WORK/model-copy.safetensors"
expect_error "JSON into a missing folder (before any work)" 1 "does not exist" "$DIAT" eval \
    "${BASE[@]}" --json "$WORK/no/such/dir/out.json"
# A small CelebA folder: two val faces without Eyeglasses.
make_root() { # DIR SPLIT: the two faces in that split
    mkdir -p "$1/img_align_celeba"
    awk -v c=$((EYE + 1)) 'NR == FNR { if ($2 == 1) val[$1] = 1; next }
        FNR > 2 && ($1 in val) && $c == -1 { print $1 }' \
        "$CELEBA/list_eval_partition.txt" "$CELEBA/list_attr_celeba.txt" | head -2 >"$1/names"
    {
        echo 2
        sed -n 2p "$CELEBA/list_attr_celeba.txt"
        grep -F -f "$1/names" "$CELEBA/list_attr_celeba.txt"
    } >"$1/list_attr_celeba.txt"
    sed "s/\$/ $2/" "$1/names" >"$1/list_eval_partition.txt"
    while read -r name; do
        cp "$CELEBA/img_align_celeba/$name" "$1/img_align_celeba/"
    done <"$1/names"
}
make_root "$WORK/small" 1
ONE=(-m "$FIXTURE" --attribute Eyeglasses "${THREADS[@]}")
expect_ok "a two-face CelebA folder" "$DIAT" eval "${ONE[@]}" --celeba "$WORK/small" \
    --json "$WORK/small.json"
json_check "two faces evaluated" "$WORK/small.json" \
    "j['settings']['faces'] == 2 == j['settings']['split_faces'] and j['settings']['split'] == 'val'"
make_root "$WORK/noval" 0
expect_error "no val faces" 1 "no image in the val split" "$DIAT" eval "${ONE[@]}" \
    --celeba "$WORK/noval"
expect_ok "--split train takes the train faces" "$DIAT" eval "${ONE[@]}" --celeba "$WORK/noval" \
    --split train --json "$WORK/train.json"
check "the table names the train split" grep -q "2 CelebA train faces without Eyeglasses" \
    "$WORK/stdout"
json_check "two train faces evaluated" "$WORK/train.json" \
    "j['settings']['faces'] == 2 == j['settings']['split_faces'] and j['settings']['split'] == 'train'"
expect_error "no test faces" 1 "no image in the test split" "$DIAT" eval "${ONE[@]}" \
    --celeba "$WORK/noval" --split test
expect_error "no faces on the source side" 2 "None of the 2 val faces" "$DIAT" eval "${ONE[@]}" \
    --celeba "$WORK/small" --direction remove
cp -r "$WORK/small" "$WORK/corrupt"
echo "not a JPEG" >"$WORK/corrupt/img_align_celeba/$(tail -1 "$WORK/small/names")"
echo '{"old": true}' >"$WORK/old.json"
expect_error "corrupt image" 1 "$(tail -1 "$WORK/small/names")" "$DIAT" eval "${ONE[@]}" \
    --celeba "$WORK/corrupt" --json "$WORK/old.json"
old_json_kept() {
    [ "$(cat "$WORK/old.json")" = '{"old": true}' ] && ! ls "$WORK" | grep -q 'old.json.tmp'
}
check "a failed run leaves the old JSON alone" old_json_kept
cp -r "$WORK/small" "$WORK/badlabel"
sed -i '3s/ -1/ 7/' "$WORK/badlabel/list_attr_celeba.txt"
expect_error "malformed label file" 1 "list_attr_celeba.txt:3" "$DIAT" eval "${ONE[@]}" \
    --celeba "$WORK/badlabel"
rm "$WORK/small/img_align_celeba/$(head -1 "$WORK/small/names")"
expect_error "missing image" 1 "1 of the 2 val-split images are missing" "$DIAT" eval \
    "${ONE[@]}" --celeba "$WORK/small"
expect_error "bad --ratio" 2 "between 0 and 1" "$DIAT" eval "${BASE[@]}" --ratio 1.5
expect_error "bad --faces" 2 "face count" "$DIAT" eval "${BASE[@]}" --faces 0
expect_error "bad --direction" 2 "add or remove" "$DIAT" eval "${BASE[@]}" --direction sideways
expect_error "bad --split" 2 "train, val or test" "$DIAT" eval "${BASE[@]}" --split dev
expect_error "--grid not PNG" 2 ".png" "$DIAT" eval "${BASE[@]}" --grid "$WORK/grid.jpg"
expect_error "no model" 2 "no model" "$DIAT" eval --celeba "$CELEBA"
expect_error "no CelebA" 2 "--celeba" "$DIAT" eval -m "$FIXTURE"
expect_error "unknown option" 2 "--bogus" "$DIAT" eval "${BASE[@]}" --bogus

summary
