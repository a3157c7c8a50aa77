#!/bin/bash
# End-to-end tests of diat-train on real CelebA faces (../shared/data):
# a denoiser run, a short DIAT run whose losses must be finite and move as
# expected, exact resume, SIGINT and time-budget stops, export into a model
# that `diat apply` loads, a new run --init-from that model (critic warm-up,
# frozen generator, provenance, resume), the attribute classifier (training,
# val accuracy, export loaded back through diat_classifier_load, resume) and
# clear errors for bad data and options.
#
#   test_train.sh DIAT_TRAIN DIAT RED_SQUARE FACE_RECOGNITION_MODEL
#
# Skips (exit 77) when the CelebA folder is absent. Prints "N passed, N failed".
set -u
if [ $# -ne 4 ]; then
    echo "usage: $0 DIAT_TRAIN DIAT RED_SQUARE FACE_RECOGNITION_MODEL" >&2
    exit 2
fi
TRAIN=$1 DIAT=$2 RED_SQUARE=$3 FR_MODEL=$4
CELEBA=${DIAT_SHARED_DATA:-../shared/data}/celeba128
if [ ! -f "$CELEBA/list_attr_celeba.txt" ]; then
    echo "SKIP: no CelebA at $CELEBA"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/diat-train.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT

. "$(dirname "$0")/checks.sh"
expect_error() { # NAME WORD CMD...: non-zero exit and an error line containing WORD
    local name=$1 word=$2; shift 2; run "$@"
    if [ $rc -ne 0 ] && grep -q 'diat-train: error:' "$WORK/stderr" && grep -qi -- "$word" "$WORK/stderr"; then
        pass "$name"; else fail "$name (exit $rc, wanted '$word')"; fi
}
# csv_check NAME FILE AWK-PROGRAM: the program exits 0 when the log is right.
csv_check() {
    if awk -F, "$3" "$2" >"$WORK/stdout" 2>&1; then pass "$1"; else fail "$1: $(cat "$WORK/stdout")"; fi
}

# DIAT_TRAIN_BACKEND=cuda runs every training command on that backend
# (tests/cuda/device-check.sh does, on the GPU machine).
BACKEND=(--backend "${DIAT_TRAIN_BACKEND:-auto}")
SMALL=(--width 4 --mask-width 4 --critic-width 4 --batch 4 --quiet "${BACKEND[@]}")
DATA=(--celeba "$CELEBA" --attribute Eyeglasses --direction remove)

# ---- the denoiser DN, trained first ----
expect_ok "denoiser trains" "$TRAIN" denoiser --celeba "$CELEBA" --run-dir "$WORK/dn" \
    --denoiser-width 8 --denoiser-depth 3 --batch 4 --steps 150 --lr-g 2e-3 --quiet "${BACKEND[@]}"
# DN starts as the identity (error = the noise); learning removes noise.
csv_check "denoiser loss is finite and falls" "$WORK/dn/log.csv" '
    NR > 1 { v = $13; if (v != v + 0 || v ~ /nan|inf/) bad = 1;
             if (NR <= 21) first += v; if (NR > 131) last += v }
    END { if (bad || NR != 151 || !(last < 0.8 * first)) { print "rows " NR " first " first / 20 " last " last / 20; exit 1 } }'
expect_ok "denoiser exports" "$TRAIN" --run-dir "$WORK/dn" --export "$WORK/dn.safetensors"

# ---- a short DIAT run with every loss term ----
expect_ok "DIAT trains 200 steps" "$TRAIN" "${DATA[@]}" "${SMALL[@]}" --run-dir "$WORK/run" \
    --steps 200 --n-critic 2 --denoiser "$WORK/dn.safetensors" --face-recognition "$FR_MODEL" \
    --checkpoint-every 100 --sample-every 100 --keep-exports
csv_check "every loss term finite" "$WORK/run/log.csv" '
    NR > 1 { for (i = 3; i <= 12; i++) if ($i != $i + 0 || $i ~ /nan|inf/) { print "row " NR " col " i ": " $i; exit 1 } }
    END { if (NR != 201) { print NR " rows"; exit 1 } }'
csv_check "every generator term is active" "$WORK/run/log.csv" '
    NR > 1 { for (i = 6; i <= 11; i++) if ($i + 0 != 0) seen[i] = 1 }
    END { for (i = 6; i <= 11; i++) if (!seen[i]) { print "column " i " always 0"; exit 1 } }'
# The critic separates references from results: its Wasserstein estimate
# E[D(ref)] - E[D(y)] grows from ~0; the mask mean starts near p = 0.12 (M's
# last norm starts at p's quantile; from 0 it would start at 0.5) and moves
# towards it.
csv_check "Wasserstein estimate grows" "$WORK/run/log.csv" '
    NR > 1 && NR <= 21 { first += $3 - $4 } NR > 181 { last += $3 - $4 }
    END { if (!(last > first && last > 0)) { print "first " first / 20 " last " last / 20; exit 1 } }'
csv_check "mask ratio starts near p" "$WORK/run/log.csv" '
    NR > 1 && NR <= 21 { first += $12 }
    END { f = first / 20 - 0.12; if (f < -0.06 || f > 0.06) { print "first " first / 20; exit 1 } }'
csv_check "mask ratio moves towards p" "$WORK/run/log.csv" '
    NR > 1 && NR <= 21 { first += $12 } NR > 181 { last += $12 }
    END { f = first / 20 - 0.12; l = last / 20 - 0.12; if (f < 0) f = -f; if (l < 0) l = -l;
          if (!(l < f)) { print "first " first / 20 " last " last / 20; exit 1 } }'
for f in checkpoint.safetensors loss.png samples/step-0000100.png samples/step-0000200.png; do
    if [ -s "$WORK/run/$f" ]; then pass "run wrote $f"; else fail "run wrote $f"; fi
done

# --keep-exports: an F16 model at each checkpoint, each with its own step
# and, as --export writes them, the run's training settings.
kept_exports() {
    local step
    for step in 100 200; do
        "$DIAT" info "$WORK/run/exports/step-0000$step.safetensors" >"$WORK/info" 2>&1 &&
            grep -q "training_iterations: $step\$" "$WORK/info" &&
            grep -Eq "^  training_settings: lambda_gp=.* n_critic=" "$WORK/info" &&
            grep -q "format: diat-model" "$WORK/info" && grep -q " F16 " "$WORK/info" || return 1
    done
    [ "$(ls "$WORK/run/exports")" = "$(printf 'step-0000100.safetensors\nstep-0000200.safetensors')" ]
}
check "--keep-exports: an F16 model per checkpoint, nothing else" kept_exports
expect_error "--keep-exports is for transfer runs" "transfer runs" "$TRAIN" denoiser \
    --celeba "$CELEBA" --run-dir "$WORK/dn-keep" --keep-exports --steps 1 --quiet

# ---- export into a model diat apply loads ----
expect_ok "export F16 (settings from the checkpoint)" "$TRAIN" --run-dir "$WORK/run" \
    --export "$WORK/model.safetensors" --f16
expect_ok "diat info reads the export" "$DIAT" info "$WORK/model.safetensors"
if grep -q "attribute: Eyeglasses" "$WORK/stdout" && grep -q "direction: remove" "$WORK/stdout" &&
    grep -q "training_iterations: 200" "$WORK/stdout" && grep -q "default_ratio: 0.120" "$WORK/stdout" &&
    grep -qi "non-commercial" "$WORK/stdout"; then
    pass "export metadata"; else fail "export metadata"; fi
# The run's own settings (--n-critic 2), not the exporting command's defaults.
if grep -q "training_settings: .*lambda_pr=10 .*n_critic=2 " "$WORK/stdout"; then
    pass "export records the run's settings"; else fail "export records the run's settings"; fi
expect_ok "diat apply uses the export" "$DIAT" apply -q --whole -m "$WORK/model.safetensors" \
    "$RED_SQUARE" "$WORK/applied.png"

# ---- resume continues exactly: 6+6 steps equal 12 straight ----
FAST=("${DATA[@]}" "${SMALL[@]}" --n-critic 1 --lambda-id 0 --lambda-pr 0)
expect_ok "straight 12 steps" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/straight" --steps 12
expect_ok "first 6 steps" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/split" --steps 6
expect_ok "resume to 12" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/split" --steps 12 --resume
cut -d, -f1,3- "$WORK/straight/log.csv" >"$WORK/a.csv"
cut -d, -f1,3- "$WORK/split/log.csv" >"$WORK/b.csv"
if cmp -s "$WORK/a.csv" "$WORK/b.csv"; then pass "resumed losses equal the straight run's"
else fail "resumed losses equal the straight run's"; diff "$WORK/a.csv" "$WORK/b.csv" | head -6; fi
# The checkpoint records the run's data, files, shape and objective (here
# three non-default settings): --resume from another folder needs only the
# run folder, and --steps to go further.
TRAIN_ABS=$(cd "$(dirname "$TRAIN")" && pwd)/$(basename "$TRAIN")
expect_ok "first 6 steps again" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/split2" --steps 6
expect_ok "resume with only --run-dir, from another folder" \
    sh -c 'cd / && exec "$0" --run-dir "$1" --steps 12 --resume --quiet' "$TRAIN_ABS" "$WORK/split2"
cut -d, -f1,3- "$WORK/split2/log.csv" >"$WORK/c.csv"
if cmp -s "$WORK/a.csv" "$WORK/c.csv"; then pass "resumed on the recorded settings alone, exactly"
else fail "resumed on the recorded settings alone, exactly"; diff "$WORK/a.csv" "$WORK/c.csv" | head -6; fi
expect_error "resume a denoiser run as a transfer run" "holds a denoiser run" \
    "$TRAIN" transfer --run-dir "$WORK/dn" --resume --steps 151
# phi, not named, is the shipped file found by name (as `diat` finds its
# models), from any folder; the checkpoint records where.
expect_ok "phi found by name from another folder" \
    sh -c 'cd / && exec "$0" --celeba "$1" --attribute Eyeglasses --direction remove \
        --lambda-pr 0 --width 4 --mask-width 4 --critic-width 4 --batch 2 --steps 1 --quiet \
        --run-dir "$2"' "$TRAIN_ABS" "$(cd "$CELEBA" && pwd)" "$WORK/phi"
if grep -aq '"opt.face_recognition":"/[^"]*/face-recognition-resnet29.safetensors"' \
    "$WORK/phi/checkpoint.safetensors"; then pass "the checkpoint records phi's absolute path"
else fail "the checkpoint records phi's absolute path"; fi

# ---- --ema: exports hold a moving average of T and M's weights ----
# Export A (the average) against d*B + (1-d)*C, tensor by tensor, read by
# the project's Python safetensors reader (bench/diat_reference.py; numpy,
# so Debian's python3).
PYTHON=${PYTHON:-/usr/bin/python3}
EMA_FORMULA='
import sys
sys.path.insert(0, sys.argv[5])
import numpy as np
from diat_reference import read_safetensors
avg, before, after = (read_safetensors(p)[0] for p in sys.argv[1:4])
d = float(sys.argv[4])
worst = max(float(np.abs(avg[k] - (d * before[k] + (1 - d) * after[k])).max()) for k in avg)
moved = max(float(np.abs(before[k] - after[k]).max()) for k in avg)
print("tensors", len(avg), "worst", worst, "moved", moved)
sys.exit(0 if avg.keys() == before.keys() == after.keys() and worst < 1e-6 and moved > 1e-4 else 1)'
BENCH_DIR=$(cd "$(dirname "$0")/../bench" && pwd)
expect_ok "weights at step 0" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/ema-w0" --steps 0
expect_ok "weights at step 1" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/ema-w1" --steps 1
expect_ok "--ema 0.75: one step" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/ema-1" --steps 1 --ema 0.75
for r in ema-w0 ema-w1 ema-1; do "$TRAIN" --run-dir "$WORK/$r" --export "$WORK/$r.safetensors" >/dev/null; done
check "--ema 0.75: the export is 0.75 w0 + 0.25 w1" "$PYTHON" -c "$EMA_FORMULA" \
    "$WORK/ema-1.safetensors" "$WORK/ema-w0.safetensors" "$WORK/ema-w1.safetensors" 0.75 "$BENCH_DIR"
# --no-ema: the run's weights as trained, exactly the run without an average's.
"$TRAIN" --run-dir "$WORK/ema-1" --export "$WORK/ema-1-last.safetensors" --no-ema >/dev/null
check "--export --no-ema writes the last step's weights" \
    cmp -s "$WORK/ema-1-last.safetensors" "$WORK/ema-w1.safetensors"
expect_error "--no-ema goes with --export" "goes with --export" "$TRAIN" "${FAST[@]}" \
    --run-dir "$WORK/ema-bad" --steps 1 --no-ema
expect_ok "diat info reads the averaged export" "$DIAT" info "$WORK/ema-1.safetensors"
if grep -q "training_settings: .* ema=0.75$" "$WORK/stdout"; then pass "the export states its average"
else fail "the export states its average"; fi
# The checkpoint keeps the average: 2 + 2 steps equal 4 straight, and the
# models kept at checkpoints hold the average as --export writes it.
expect_ok "--ema: straight 4 steps" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/ema-straight" \
    --steps 4 --ema 0.75 --keep-exports --checkpoint-every 2
expect_ok "--ema: first 2 steps" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/ema-split" --steps 2 --ema 0.75
expect_ok "--ema: resume to 4 (the run keeps its --ema)" "$TRAIN" "${FAST[@]}" \
    --run-dir "$WORK/ema-split" --steps 4 --resume --keep-exports
# A resumed run's kept exports state its settings, the average included.
run "$DIAT" info "$WORK/ema-split/exports/step-0000004.safetensors"
if grep -q "training_settings: .*lambda_pr=0 .*n_critic=1 .* ema=0.75$" "$WORK/stdout"; then
    pass "a resumed run's kept export states its settings"
else fail "a resumed run's kept export states its settings"; fi
"$TRAIN" --run-dir "$WORK/ema-straight" --export "$WORK/ema-straight.safetensors" >/dev/null
"$TRAIN" --run-dir "$WORK/ema-split" --export "$WORK/ema-split.safetensors" >/dev/null
check "--ema: the resumed run's average equals the straight run's" \
    cmp -s "$WORK/ema-straight.safetensors" "$WORK/ema-split.safetensors"
"$TRAIN" --run-dir "$WORK/ema-straight" --export "$WORK/ema-straight16.safetensors" --f16 >/dev/null
check "--ema: --keep-exports hold the average" \
    cmp -s "$WORK/ema-straight16.safetensors" "$WORK/ema-straight/exports/step-0000004.safetensors"
# Given on resuming a run without one, the average starts at the resumed
# weights: one step later it is 0.5 w1 + 0.5 w2.
expect_ok "weights at step 2" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/ema-w2" --steps 2
"$TRAIN" --run-dir "$WORK/ema-w2" --export "$WORK/ema-w2.safetensors" >/dev/null
cp -r "$WORK/ema-w1" "$WORK/ema-late"
expect_ok "--ema 0.5 on resuming a run without one" "$TRAIN" "${FAST[@]}" \
    --run-dir "$WORK/ema-late" --steps 2 --resume --ema 0.5
"$TRAIN" --run-dir "$WORK/ema-late" --export "$WORK/ema-late.safetensors" >/dev/null
check "--ema on resume: the average starts at the resumed weights" "$PYTHON" -c "$EMA_FORMULA" \
    "$WORK/ema-late.safetensors" "$WORK/ema-w1.safetensors" "$WORK/ema-w2.safetensors" 0.5 "$BENCH_DIR"
expect_error "--ema is a decay below 1" "--ema must be" "$TRAIN" "${FAST[@]}" \
    --run-dir "$WORK/ema-bad" --steps 1 --ema 1
expect_error "--ema is for transfer runs" "transfer runs" "$TRAIN" denoiser \
    --celeba "$CELEBA" --run-dir "$WORK/dn-ema" --ema 0.9 --steps 1 --quiet

# ---- stops: time budget and SIGINT leave a checkpoint that resumes ----
run "$TRAIN" "${FAST[@]}" --run-dir "$WORK/budget" --steps 100000 --max-time 2
if [ $rc -eq 0 ] && [ -s "$WORK/budget/checkpoint.safetensors" ]; then pass "--max-time stops cleanly"
else fail "--max-time stops cleanly (exit $rc)"; fi
"$TRAIN" "${FAST[@]}" --run-dir "$WORK/sigint" --steps 100000 >/dev/null 2>"$WORK/stderr" &
pid=$!
# Interrupt mid-training, not during start-up: wait for the first logged step.
for _ in $(seq 600); do
    [ -s "$WORK/sigint/log.csv" ] && [ "$(wc -l <"$WORK/sigint/log.csv")" -ge 3 ] && break
    sleep 0.1
done
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 130 ] && [ -s "$WORK/sigint/checkpoint.safetensors" ]; then pass "SIGINT checkpoints and exits 130"
else fail "SIGINT checkpoints and exits 130 (exit $rc)"; fi
steps=$(($(wc -l <"$WORK/sigint/log.csv") - 1))
expect_ok "resume after SIGINT" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/sigint" --steps $((steps + 2)) --resume

# ---- --init-from: a new run from the exported model, a fresh critic first ----
# No --width/--mask-width: they come from the model (4, not the defaults).
INIT=("${DATA[@]}" --critic-width 4 --batch 4 --n-critic 1 --lambda-id 0 --lambda-pr 0 --quiet "${BACKEND[@]}")
MODEL=$WORK/model.safetensors
expect_ok "--init-from: 5 critic warm-up steps, 0 generator steps" "$TRAIN" "${INIT[@]}" \
    --init-from "$MODEL" --critic-warmup 5 --steps 0 --run-dir "$WORK/init"
csv_check "warm-up rows are steps -5..-1, critic terms only" "$WORK/init/log.csv" '
    NR > 1 { if ($1 != NR - 7) { print "row " NR ": step " $1; exit 1 }
             for (i = 3; i <= 12; i++) if ($i != $i + 0 || $i ~ /nan|inf/) { print "row " NR " col " i ": " $i; exit 1 }
             for (i = 6; i <= 11; i++) if ($i + 0 != 0) { print "row " NR " col " i " not 0: " $i; exit 1 }
             if ($3 + 0 != 0 || $5 + 0 != 0) critic = 1 }
    END { if (NR != 6 || !critic) { print NR " rows, critic terms seen " critic; exit 1 } }'
# T and M stay frozen in the warm-up, M's batch-norm statistics included: an
# F16 export before any generator step holds the model's very tensor bytes
# (the data after each header; F16 -> F32 -> F16 is exact).
expect_ok "export right after the warm-up" "$TRAIN" --run-dir "$WORK/init" \
    --export "$WORK/init.safetensors" --f16
tensor_bytes() { local n; n=$(od -An -tu8 -N8 "$1" | tr -d ' '); tail -c +$((9 + n)) "$1"; }
if [ -s "$WORK/init.safetensors" ] &&
    cmp -s <(tensor_bytes "$MODEL") <(tensor_bytes "$WORK/init.safetensors"); then
    pass "T and M after the warm-up are the model's"; else fail "T and M after the warm-up are the model's"; fi
run "$DIAT" info "$WORK/init.safetensors"
if grep -q "initialised_from: model.safetensors (" "$WORK/stdout" &&
    grep -q "training_iterations: 0" "$WORK/stdout" && grep -q "default_ratio: 0.120" "$WORK/stdout"; then
    pass "export says where it was initialised from"; else fail "export says where it was initialised from"; fi
expect_ok "resume the --init-from run (widths from its checkpoint)" "$TRAIN" "${INIT[@]}" \
    --run-dir "$WORK/init" --steps 2 --resume
csv_check "generator steps follow the warm-up" "$WORK/init/log.csv" '
    NR > 1 { s = s " " $1 } END { if (s != " -5 -4 -3 -2 -1 1 2") { print "steps" s; exit 1 } }'
run "$TRAIN" --run-dir "$WORK/init" --export "$WORK/init2.safetensors"
if [ $rc -eq 0 ] && "$DIAT" info "$WORK/init2.safetensors" 2>&1 | grep -q "initialised_from: model.safetensors"
then pass "a resumed run's export keeps initialised_from"; else fail "a resumed run's export keeps initialised_from"; fi
# Stopped inside the warm-up (time budget), resumed: the same log as straight.
expect_ok "straight: warm-up 60, 2 steps" "$TRAIN" "${INIT[@]}" --init-from "$MODEL" \
    --critic-warmup 60 --steps 2 --run-dir "$WORK/warm1"
expect_ok "stopped in the warm-up" "$TRAIN" "${INIT[@]}" --init-from "$MODEL" \
    --critic-warmup 60 --steps 2 --run-dir "$WORK/warm2" --max-time 0.1
expect_ok "resumed in the warm-up" "$TRAIN" "${INIT[@]}" --run-dir "$WORK/warm2" --steps 2 --resume
if cmp -s <(cut -d, -f1,3- "$WORK/warm1/log.csv") <(cut -d, -f1,3- "$WORK/warm2/log.csv"); then
    pass "warm-up resumes exactly"; else fail "warm-up resumes exactly"; fi

# ---- the attribute classifier: five attributes, val accuracy, export ----
CLS=(classifier --celeba "$CELEBA" --width 4 --batch 8 --quiet "${BACKEND[@]}")
expect_ok "classifier trains 100 steps" "$TRAIN" "${CLS[@]}" --run-dir "$WORK/cls" --steps 100 \
    --lr 3e-3 --checkpoint-every 50
cp "$WORK/stdout" "$WORK/cls-train.txt"
# Cross-entropy of a random start is ~0.69 and falls; every column is finite.
csv_check "classifier loss is finite and falls" "$WORK/cls/log.csv" '
    NR == 1 { if ($3 != "cross_entropy" || $9 != "acc_Male") { print "header " $0; exit 1 } }
    NR > 1 { for (i = 3; i <= 9; i++) if ($i != $i + 0 || $i ~ /nan|inf/) { print "row " NR " col " i ": " $i; exit 1 }
             for (i = 5; i <= 9; i++) if ($i < 0 || $i > 1) { print "row " NR " accuracy " $i; exit 1 }
             if (NR <= 21) first += $3; if (NR > 81) last += $3 }
    END { if (NR != 101 || !(last < 0.9 * first)) { print "rows " NR " first " first / 20 " last " last / 20; exit 1 } }'
# val_lines FILE: the five "  NAME accuracy majority" rows of a printed evaluation.
val_lines() { grep -E '^  (Eyeglasses|Mouth_Slightly_Open|Smiling|Young|Male) ' "$1"; }
# same_figures NAME FILE: FILE's evaluation rows are those the training printed.
same_figures() {
    if cmp -s <(val_lines "$WORK/cls-train.txt") <(val_lines "$2"); then pass "$1"
    else fail "$1"; diff <(val_lines "$WORK/cls-train.txt") <(val_lines "$2"); fi
}
in_range=$(val_lines "$WORK/cls-train.txt" | awk '$2 >= 0 && $2 <= 1 && $3 >= 0.5 && $3 <= 1' | wc -l)
if [ "$in_range" = 5 ]; then pass "training ends with the val accuracy of each attribute"
else fail "training ends with the val accuracy of each attribute"; cat "$WORK/cls-train.txt"; fi
# Even 100 small steps tell men and smiles apart better than the majority guess.
if val_lines "$WORK/cls-train.txt" | awk '/Smiling|Male/ { gain += $2 - $3 } END { exit !(gain > 0.1) }'
then pass "classifier beats the majority guess on Smiling and Male"
else fail "classifier beats the majority guess on Smiling and Male"; val_lines "$WORK/cls-train.txt"; fi
expect_ok "classifier exports (evaluation from the checkpoint)" "$TRAIN" --run-dir "$WORK/cls" \
    --export "$WORK/cls.safetensors"
header() { local n; n=$(od -An -tu8 -N8 "$1" | tr -d ' '); head -c $((8 + n)) "$1" | tail -c "$n"; }
header "$WORK/cls.safetensors" >"$WORK/cls-header.json"
male=$(val_lines "$WORK/cls-train.txt" | awk '/Male/ { print $2 }')
missing=""
for entry in '"format":"diat-classifier"' '"width":"4"' '"training_iterations":"100"' \
    '"attributes":"Eyeglasses,Mouth_Slightly_Open,Smiling,Young,Male"' '"val_faces":"4535"' \
    "\"val_accuracy.Male\":\"$male\"" 'non-commercial'; do
    grep -qF -- "$entry" "$WORK/cls-header.json" || missing="$missing $entry"
done
if [ -z "$missing" ]; then pass "classifier export metadata"
else fail "classifier export metadata (missing$missing)"; fi
# The export, loaded by diat_classifier_load and run by diat_classifier_predict,
# judges the val split exactly as the run did; so does --evaluate on the run.
expect_ok "evaluate the exported classifier" "$TRAIN" "${CLS[@]}" --evaluate \
    --model "$WORK/cls.safetensors"
same_figures "the export judges as the run did" "$WORK/stdout"
expect_ok "--evaluate the run" "$TRAIN" --run-dir "$WORK/cls" --evaluate --quiet "${BACKEND[@]}"
same_figures "--evaluate repeats the run's figures" "$WORK/stdout"
expect_ok "classifier exports F16" "$TRAIN" --run-dir "$WORK/cls" \
    --export "$WORK/cls16.safetensors" --f16
expect_ok "the F16 export loads and judges" "$TRAIN" "${CLS[@]}" --evaluate \
    --model "$WORK/cls16.safetensors"
# Resume: stopped by the time budget (then judged), resumed: the same losses as
# straight (the cosine schedule is a function of the step).
expect_ok "classifier straight 80 steps" "$TRAIN" "${CLS[@]}" --run-dir "$WORK/cls-a" --steps 80
expect_ok "classifier stopped early" "$TRAIN" "${CLS[@]}" --run-dir "$WORK/cls-b" --steps 80 \
    --max-time 0.1
stopped=$(($(wc -l <"$WORK/cls-b/log.csv") - 1))
expect_ok "classifier resumed" "$TRAIN" "${CLS[@]}" --run-dir "$WORK/cls-b" --steps 80 --resume
if [ "$stopped" -gt 0 ] && [ "$stopped" -lt 80 ] &&
    cmp -s <(cut -d, -f1,3- "$WORK/cls-a/log.csv") <(cut -d, -f1,3- "$WORK/cls-b/log.csv"); then
    pass "classifier resumes exactly (stopped at $stopped)"
else fail "classifier resumes exactly (stopped at $stopped)"; fi
expect_error "classifier: no data" "--celeba" "$TRAIN" classifier --run-dir "$WORK/x13"
expect_error "classifier: --attribute" "--attribute" "$TRAIN" "${CLS[@]}" --attribute Smiling \
    --run-dir "$WORK/x14"
expect_error "classifier: --lr-g" "--lr-g" "$TRAIN" "${CLS[@]}" --lr-g 1e-3 --run-dir "$WORK/x15"
expect_error "classifier: bad --loss" "--loss" "$TRAIN" "${CLS[@]}" --loss hinge --run-dir "$WORK/x16"
expect_error "--lr in a transfer run" "--lr" "$TRAIN" "${FAST[@]}" --lr 1e-3 --run-dir "$WORK/x17"
expect_error "--evaluate a transfer run" "classifier runs" "$TRAIN" --run-dir "$WORK/run" --evaluate
expect_error "--evaluate an empty run folder" "nothing to evaluate" "$TRAIN" --run-dir "$WORK/empty3" \
    --evaluate
expect_error "--evaluate --model needs --celeba" "--celeba" "$TRAIN" classifier --evaluate \
    --model "$WORK/cls.safetensors"
expect_error "--evaluate a DIAT model" "not an attribute classifier" "$TRAIN" "${CLS[@]}" --evaluate \
    --model "$MODEL"
expect_error "--model without --evaluate" "--evaluate" "$TRAIN" "${CLS[@]}" --model "$MODEL" \
    --run-dir "$WORK/x18"
expect_error "classifier resume with another width" "another run" "$TRAIN" "${CLS[@]}" --width 8 \
    --run-dir "$WORK/cls" --steps 120 --resume

# ---- bad options and data give clear errors ----
expect_error "--init-from with --resume" "--resume" "$TRAIN" "${INIT[@]}" --init-from "$MODEL" \
    --run-dir "$WORK/init" --resume
expect_error "--init-from: another attribute" "attribute" "$TRAIN" "${INIT[@]}" --attribute Smiling \
    --init-from "$MODEL" --run-dir "$WORK/x6"
expect_error "--init-from: another direction" "direction" "$TRAIN" "${INIT[@]}" --direction add \
    --init-from "$MODEL" --run-dir "$WORK/x7"
# --init-other-edit: a related edit as the starting point. The run keeps its
# own attribute's p (Smiling 0.10, not the model's Eyeglasses 0.12), and the
# export says which edit it started from.
expect_ok "--init-other-edit: start add-smile from a remove-eyeglasses model" "$TRAIN" \
    "${INIT[@]}" --attribute Smiling --direction add --init-from "$MODEL" --init-other-edit \
    --critic-warmup 2 --steps 1 --run-dir "$WORK/other"
run "$TRAIN" --run-dir "$WORK/other" --export "$WORK/other.safetensors"
"$DIAT" info "$WORK/other.safetensors" >"$WORK/other-info.txt" 2>&1
if [ $rc -eq 0 ] && grep -q "another edit: Eyeglasses remove" "$WORK/other-info.txt" &&
    grep -q "default_ratio: 0.100" "$WORK/other-info.txt" && grep -q "attribute: Smiling" "$WORK/other-info.txt"
then pass "--init-other-edit: the export names the edit it started from, with the run's p"
else fail "--init-other-edit: the export names the edit it started from, with the run's p"; fi
expect_error "--init-other-edit without --init-from" "--init-from" "$TRAIN" "${INIT[@]}" \
    --init-other-edit --run-dir "$WORK/x13"
expect_error "--init-from: another width" "--width" "$TRAIN" "${INIT[@]}" --width 8 \
    --init-from "$MODEL" --run-dir "$WORK/x8"
head -c 2000 "$MODEL" >"$WORK/truncated.safetensors"
expect_error "--init-from: a truncated file" "truncated.safetensors" "$TRAIN" "${INIT[@]}" \
    --init-from "$WORK/truncated.safetensors" --run-dir "$WORK/x9"
cp "$MODEL" "$WORK/nan.safetensors"
printf '\377\377\377\377' | dd of="$WORK/nan.safetensors" bs=1 conv=notrunc status=none \
    seek=$(($(stat -c %s "$MODEL") - 4))
expect_error "--init-from: a NaN weight" "non-finite" "$TRAIN" "${INIT[@]}" \
    --init-from "$WORK/nan.safetensors" --run-dir "$WORK/x10"
expect_error "--init-from: a checkpoint is the wrong kind" "not a DIAT model" "$TRAIN" "${INIT[@]}" \
    --init-from "$WORK/run/checkpoint.safetensors" --run-dir "$WORK/x11"
expect_error "--init-from: a missing file" "nowhere.safetensors" "$TRAIN" "${INIT[@]}" \
    --init-from "$WORK/nowhere.safetensors" --run-dir "$WORK/x12"
expect_error "no data" "no data" "$TRAIN" --run-dir "$WORK/x" --attribute Smiling
expect_error "no attribute" "--attribute" "$TRAIN" --celeba "$CELEBA" --run-dir "$WORK/x"
expect_error "unknown attribute" "Sunglasses" "$TRAIN" --celeba "$CELEBA" --attribute Sunglasses \
    "${SMALL[@]}" --lambda-id 0 --lambda-pr 0 --run-dir "$WORK/x1"
expect_error "missing CelebA folder" "$WORK/nowhere" "$TRAIN" --celeba "$WORK/nowhere" \
    --attribute Smiling "${SMALL[@]}" --lambda-id 0 --lambda-pr 0 --run-dir "$WORK/x2"
mkdir -p "$WORK/bad/img_align_celeba"
cp "$CELEBA/list_eval_partition.txt" "$WORK/bad/"
head -5 "$CELEBA/list_attr_celeba.txt" | sed '4s/ 1 / 7 /' >"$WORK/bad/list_attr_celeba.txt"
expect_error "malformed label file" "list_attr_celeba.txt" "$TRAIN" --celeba "$WORK/bad" \
    --attribute Smiling "${SMALL[@]}" --lambda-id 0 --lambda-pr 0 --run-dir "$WORK/x3"
expect_error "pr without a denoiser" "denoiser" "$TRAIN" "${DATA[@]}" --run-dir "$WORK/x4"
expect_error "bad lambda" "--lambda-gp" "$TRAIN" "${FAST[@]}" --lambda-gp -1 --run-dir "$WORK/x5"
expect_error "existing run without --resume" "--resume" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/split" --steps 20
expect_error "resume without a checkpoint" "does not exist" "$TRAIN" "${FAST[@]}" --run-dir "$WORK/empty" --resume
expect_error "export without a run" "nothing to export" "$TRAIN" --run-dir "$WORK/empty2" --export "$WORK/none.safetensors"
expect_error "resume with other options" "another run" "$TRAIN" "${FAST[@]}" --width 8 --run-dir "$WORK/split" --steps 20 --resume

summary
