#!/bin/bash
# End-to-end tests of the `diat` command on real photos and the fixtures.
#
#   test_cli.sh DIAT COMPARE_IMAGES FIXTURE_MODEL TINT_MODEL RED_SQUARE DATA_DIR
#
# The fixture models (tools/make-fixture-model.c) have an identity T (or T
# plus a red tint) and a mask M that marks pixels where red clearly dominates
# green, so the tests know where an edit lands. Pixel checks go through
# compare_images. Prints one line per check and "N passed, N failed".
set -u

if [ $# -ne 6 ]; then
    echo "usage: $0 DIAT COMPARE_IMAGES FIXTURE TINT RED_SQUARE DATA_DIR" >&2
    exit 2
fi
DIAT=$1 CMP=$2 FIXTURE=$3 TINT=$4 RED_SQUARE=$5 DATA=$6
WORK=$(mktemp -d "${TMPDIR:-/tmp}/diat-cli.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT

. "$(dirname "$0")/checks.sh"

# expect_error NAME STATUS WORD CMD...: exit status STATUS (or "nonzero"),
# one "diat: error:" line on stderr that contains WORD (case-insensitive).
expect_error() {
    local name=$1 want=$2 word=$3
    shift 3
    run "$@"
    local status_ok=0
    if [ "$want" = nonzero ]; then [ "$rc" -ne 0 ] && status_ok=1; else [ "$rc" -eq "$want" ] && status_ok=1; fi
    if [ $status_ok -eq 1 ] && grep -q '^diat: error: ' "$WORK/stderr" &&
        grep -qi -- "$word" "$WORK/stderr"; then
        pass "$name"
    else
        fail "$name (exit $rc, wanted $want and '$word')"
    fi
}

# expect_output NAME PATTERN: the last command's stdout matches PATTERN (ERE).
expect_output() {
    if grep -Eq -- "$2" "$WORK/stdout"; then pass "$1"; else fail "$1 (no match for '$2')"; fi
}

# Inputs are copies; their checksums are compared at the end.
mkdir -p "$WORK/in" "$WORK/out"
cp "$DATA"/photos/*.png "$DATA"/photos/*.jpg "$DATA"/formats/*.png "$DATA"/formats/*.jpg \
    "$RED_SQUARE" "$WORK/in/"
IN=$WORK/in
OUT=$WORK/out
(cd "$IN" && sha256sum -- * >"$WORK/inputs.sha256")

# Variants of a real photo in every PNG layout diat keeps.
"$CMP" convert "$IN/astronaut.png" "$IN/astro-rgb16.png" 3 16 &&
    "$CMP" convert "$IN/astronaut.png" "$IN/astro-rgba8.png" 4 8 &&
    "$CMP" convert "$IN/astronaut.png" "$IN/astro-rgba16.png" 4 16 &&
    "$CMP" convert "$IN/astronaut.png" "$IN/astro-gray16.png" 1 16 &&
    "$CMP" convert "$IN/astronaut.png" "$IN/astro-graya8.png" 2 8 || {
    echo "FAIL cannot make the test variants"
    exit 1
}
ASTRO_BOX=75,30,100,120 # her face and the top of the orange suit (256x256 PNG)

# ---- help and version ----
expect_ok "diat --help" "$DIAT" --help
expect_output "main help lists apply" '^  apply'
expect_ok "diat apply --help" "$DIAT" apply --help
expect_output "apply help documents --box" -- '--box X,Y,W,H'
expect_ok "diat info --help" "$DIAT" info --help
expect_ok "diat version" "$DIAT" version
expect_output "version names diat" '^diat [0-9]'

# ---- info ----
expect_ok "info on the fixture" "$DIAT" info "$FIXTURE"
expect_output "info prints metadata" '^  attribute: TestFixture$'
expect_output "info prints the format" '^  format: diat-model$'
expect_output "info prints the label" '^  label: Test fixture \(not a trained model\)$'
expect_output "info lists tensors with dtype and shape" '^  T\.up5\.weight +F32 +\[12, 4, 3, 3\]$'
expect_output "info prints the parameter count" '^parameters: [1-9][0-9]*$'
expect_output "info prints the file size" '^file size: [1-9][0-9]* bytes'

# ---- apply: where edits land ----
# --no-align: the box's square as it is, which holds the top of the orange
# suit that the fixture's red-dominance mask marks. (Aligned, the face's
# square stops above the suit: the checks below with a box then set a mask
# ratio -p, which marks a share of the face whatever its colours.)
expect_ok "apply tint on a real photo" "$DIAT" apply -m "$TINT" --box $ASTRO_BOX --no-align \
    --mask "$OUT/astro-mask.png" --overlay "$OUT/astro-overlay.png" \
    "$IN/astronaut.png" "$OUT/astro.png"
expect_ok "unmasked pixels bit-identical, masked changed" \
    "$CMP" untouched "$IN/astronaut.png" "$OUT/astro.png" "$OUT/astro-mask.png" --expect-change
expect_ok "output keeps the input layout" "$CMP" describe "$OUT/astro.png"
expect_output "output is 256x256 RGB 8-bit PNG" '^256x256 channels=3 depth=8 format=PNG$'
expect_ok "overlay written" "$CMP" describe "$OUT/astro-overlay.png"
expect_output "overlay is RGB 8-bit" '^256x256 channels=3 depth=8'

expect_ok "apply identity fixture" "$DIAT" apply -q -m "$FIXTURE" -p 0.8 --box $ASTRO_BOX \
    --mask "$OUT/id-mask.png" "$IN/astronaut.png" "$OUT/id.png"
if [ -s "$WORK/stderr" ]; then fail "--quiet prints nothing"; else pass "--quiet prints nothing"; fi
run "$CMP" untouched "$IN/astronaut.png" "$OUT/id.png" "$OUT/id-mask.png"
if [ "$rc" -eq 0 ] && grep -q 'masked_changed=0 ' "$WORK/stdout" &&
    ! grep -q ' masked=0 ' "$WORK/stdout"; then
    pass "identity T changes no pixel, even under the mask"
else
    fail "identity T changes no pixel, even under the mask"
fi

expect_ok "apply tint on the red square (--whole)" "$DIAT" apply -m "$TINT" --whole \
    --mask "$OUT/square-mask.png" "$IN/red-square.png" "$OUT/square.png"
expect_ok "mask covers the square and not the background" \
    "$CMP" coverage "$OUT/square-mask.png" 48 48 64 64 8 0.90 0.05
expect_ok "the square got redder, unmasked pixels identical" \
    "$CMP" untouched "$IN/red-square.png" "$OUT/square.png" "$OUT/square-mask.png" --expect-red
expect_ok "mask ratio -p 0.05" "$DIAT" apply -q -m "$TINT" -p 0.05 --whole \
    --mask "$OUT/square-p-mask.png" "$IN/red-square.png" "$OUT/square-p.png"
expect_ok "with -p unmasked pixels still identical" \
    "$CMP" untouched "$IN/red-square.png" "$OUT/square-p.png" "$OUT/square-p-mask.png"
expect_ok "--threads 1 --backend cpu" "$DIAT" apply -q -m "$TINT" --threads 1 --backend cpu \
    --whole "$IN/red-square.png" "$OUT/square-cpu.png"
if cmp -s "$OUT/square.png" "$OUT/square-cpu.png"; then
    pass "one thread gives the same file"
else
    fail "one thread gives the same file"
fi

# ---- apply: layouts and depths ----
for variant in rgb16:3:16 rgba8:4:8 rgba16:4:16 gray16:1:16 graya8:2:8; do
    IFS=: read -r name channels depth <<<"$variant"
    expect_ok "apply on $name" "$DIAT" apply -q -m "$TINT" -p 0.5 --box $ASTRO_BOX \
        --mask "$OUT/astro-$name-mask.png" "$IN/astro-$name.png" "$OUT/astro-$name.png"
    expect_ok "$name: layout kept" "$CMP" describe "$OUT/astro-$name.png"
    expect_output "$name: $channels channels, $depth-bit" \
        "^256x256 channels=$channels depth=$depth format=PNG$"
    # Gray reaches the networks as R = G = B, which the fixture's red mask
    # never marks: there only "nothing else changed" can be checked.
    expect=--expect-change
    [ "$channels" -le 2 ] && expect=
    expect_ok "$name: unmasked and alpha identical${expect:+, masked changed}" "$CMP" untouched \
        "$IN/astro-$name.png" "$OUT/astro-$name.png" "$OUT/astro-$name-mask.png" $expect
done
expect_ok "apply on a real gray photo" "$DIAT" apply -q -m "$TINT" --box 150,80,90,90 \
    --mask "$OUT/camera-mask.png" "$IN/camera.png" "$OUT/camera.png"
expect_ok "gray photo: unmasked identical" \
    "$CMP" untouched "$IN/camera.png" "$OUT/camera.png" "$OUT/camera-mask.png"

# ---- JPEG ----
expect_ok "JPEG in, JPEG out" "$DIAT" apply -q -m "$TINT" --box 112,45,150,180 \
    "$IN/astronaut.jpg" "$OUT/astro-out.jpg"
expect_ok "JPEG output readable" "$CMP" describe "$OUT/astro-out.jpg"
expect_output "JPEG output is 384x384 RGB" '^384x384 channels=3 depth=8 format=JPEG$'
expect_ok "JPEG in, PNG out" "$DIAT" apply -q -m "$TINT" -p 0.5 --box 112,45,150,180 \
    --mask "$OUT/astro-jpg-mask.png" "$IN/astronaut.jpg" "$OUT/astro-from-jpg.png"
expect_ok "JPEG in: unmasked pixels identical to the decoded input" "$CMP" untouched \
    "$IN/astronaut.jpg" "$OUT/astro-from-jpg.png" "$OUT/astro-jpg-mask.png" --expect-change
expect_ok "RGBA PNG to JPEG" "$DIAT" apply -m "$TINT" --box $ASTRO_BOX \
    "$IN/astro-rgba8.png" "$OUT/astro-rgba.jpg"
if grep -qi 'alpha' "$WORK/stderr"; then pass "alpha drop is noted"; else fail "alpha drop is noted"; fi
expect_ok "JPEG of RGBA readable" "$CMP" describe "$OUT/astro-rgba.jpg"
expect_output "JPEG of RGBA has 3 channels" 'channels=3 depth=8 format=JPEG'

# ---- decoding of every PNG kind (values as ImageMagick decodes them) ----
check_pixel() { # FILE X Y LAYOUT PIXEL
    run "$CMP" describe "$IN/$1" "$2" "$3"
    if [ "$rc" -eq 0 ] && grep -qx -- "$4" "$WORK/stdout" && grep -qx -- "pixel $5" "$WORK/stdout"; then
        pass "decode $1 ($2,$3)"
    else
        fail "decode $1 ($2,$3): wanted '$4' and 'pixel $5'"
    fi
}
check_pixel palette-trns.png 10 5 "24x16 channels=4 depth=8 format=PNG" "231 200 177 255"
run "$CMP" describe "$IN/palette-trns.png" 3 5
if grep -Eq '^pixel [0-9]+ [0-9]+ [0-9]+ 0$' "$WORK/stdout"; then
    pass "decode palette-trns.png: tRNS becomes alpha 0"
else
    fail "decode palette-trns.png: tRNS becomes alpha 0"
fi
check_pixel gray16.png 3 5 "24x16 channels=1 depth=16 format=PNG" "55883"
check_pixel rgba16.png 10 5 "24x16 channels=4 depth=16 format=PNG" "58853 50886 45232 20480"
check_pixel gray-alpha.png 3 5 "24x16 channels=2 depth=8 format=PNG" "217 32"
check_pixel gray2.png 10 5 "24x16 channels=1 depth=8 format=PNG" "170"
check_pixel interlaced.png 10 5 "24x16 channels=3 depth=8 format=PNG" "229 198 176"
check_pixel gray.jpg 10 5 "24x16 channels=1 depth=8 format=JPEG" "204"

# ---- errors: usage (exit 2) ----
expect_error "unknown command" 2 "unknown command" "$DIAT" frobnicate
expect_error "unknown option" 2 "unknown option" "$DIAT" apply --frobnicate -m "$TINT" \
    "$IN/red-square.png" "$OUT/x.png"
expect_error "option without its argument" 2 "needs an argument" "$DIAT" apply "$IN/red-square.png" \
    "$OUT/x.png" -m
expect_error "bad box" 2 "box" "$DIAT" apply -m "$TINT" --box 1,2,3 "$IN/red-square.png" "$OUT/x.png"
expect_error "box with zero width" 2 "box" "$DIAT" apply -m "$TINT" --box 1,2,0,5 \
    "$IN/red-square.png" "$OUT/x.png"
expect_error "box outside the image" 2 "outside" "$DIAT" apply -m "$TINT" --box 500,500,50,50 \
    "$IN/red-square.png" "$OUT/x.png"
expect_error "p = 1.5" 2 "ratio" "$DIAT" apply -m "$TINT" -p 1.5 "$IN/red-square.png" "$OUT/x.png"
expect_error "p not a number" 2 "ratio" "$DIAT" apply -m "$TINT" -p abc "$IN/red-square.png" \
    "$OUT/x.png"
expect_error "no model option" 2 "model" "$DIAT" apply "$IN/red-square.png" "$OUT/x.png"
expect_error "no output" 2 "output" "$DIAT" apply -m "$TINT" "$IN/red-square.png"
expect_error "unknown output extension" 2 ".png" "$DIAT" apply -m "$TINT" "$IN/red-square.png" \
    "$OUT/x.bmp"
expect_error "bad thread count" 2 "thread" "$DIAT" apply -m "$TINT" --threads x \
    "$IN/red-square.png" "$OUT/x.png"
expect_error "unknown backend" 2 "backend" "$DIAT" apply -m "$TINT" --backend gpu \
    "$IN/red-square.png" "$OUT/x.png"
expect_error "non-square image with --whole" 2 "--box" "$DIAT" apply -m "$TINT" --whole \
    "$IN/interlaced.png" "$OUT/x.png"
expect_error "bad --face" 2 "face" "$DIAT" apply -m "$TINT" --face two "$IN/red-square.png" \
    "$OUT/x.png"
expect_error "--face 0" 2 "face" "$DIAT" apply -m "$TINT" --face 0 "$IN/red-square.png" "$OUT/x.png"
expect_error "--whole with --box" 2 "--whole" "$DIAT" apply -m "$TINT" --whole --box 1,2,30,30 \
    "$IN/red-square.png" "$OUT/x.png"
expect_error "--box with --face" 2 "--face" "$DIAT" apply -m "$TINT" --box 1,2,30,30 --face 1 \
    "$IN/red-square.png" "$OUT/x.png"
expect_error "--no-align without --box" 2 "--no-align" "$DIAT" apply -m "$TINT" --no-align \
    "$IN/red-square.png" "$OUT/x.png"
expect_error "mask over the input" 2 "overwrite" "$DIAT" apply -m "$TINT" \
    --mask "$IN/red-square.png" "$IN/red-square.png" "$OUT/x.png"
expect_error "info without a model" 2 "model" "$DIAT" info

# ---- errors: runtime (exit 1) ----
printf 'not a model at all, just some text that is long enough' >"$WORK/corrupt.safetensors"
head -c 2000 "$FIXTURE" >"$WORK/truncated.safetensors"
head -c 5000 "$IN/astronaut.png" >"$WORK/truncated.png"
head -c 8000 "$IN/astronaut.jpg" >"$WORK/truncated.jpg"
echo "hello" >"$WORK/text.png"
expect_error "missing model file" 1 "no-such-model" "$DIAT" apply -m "$WORK/no-such-model.safetensors" \
    "$IN/red-square.png" "$OUT/x.png"
expect_error "corrupt model file" 1 "corrupt.safetensors" "$DIAT" apply \
    -m "$WORK/corrupt.safetensors" "$IN/red-square.png" "$OUT/x.png"
expect_error "truncated model file" 1 "truncated.safetensors" "$DIAT" apply \
    -m "$WORK/truncated.safetensors" "$IN/red-square.png" "$OUT/x.png"
expect_error "info on a corrupt model" 1 "corrupt.safetensors" "$DIAT" info "$WORK/corrupt.safetensors"
expect_error "truncated PNG" 1 "truncated" "$DIAT" apply -m "$TINT" "$WORK/truncated.png" "$OUT/x.png"
expect_error "truncated JPEG" 1 "truncated.jpg" "$DIAT" apply -m "$TINT" "$WORK/truncated.jpg" \
    "$OUT/x.png"
expect_error "nonexistent input" 1 "no such file" "$DIAT" apply -m "$TINT" "$WORK/missing.png" \
    "$OUT/x.png"
expect_error "not an image" 1 "not a PNG or JPEG" "$DIAT" apply -m "$TINT" "$WORK/text.png" \
    "$OUT/x.png"
expect_error "CMYK JPEG" 1 "CMYK" "$DIAT" apply -m "$TINT" "$IN/cmyk.jpg" "$OUT/x.png"
# Headers that claim absurd sizes: refused before any allocation.
printf '\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x9c\x40\x00\x00\x9c\x40\x08\x02\x00\x00\x00\xde\x6e\x99\x52' \
    >"$WORK/huge.png" # IHDR of 40000x40000 RGB, nothing after it
cp "$IN/gray.jpg" "$WORK/huge.jpg"
printf '\xfd\xe8\xfd\xe8' | dd of="$WORK/huge.jpg" bs=1 seek=94 conv=notrunc 2>/dev/null # SOF0: 65000x65000
expect_error "PNG claiming 40000x40000" 1 "larger than diat handles" "$DIAT" apply -m "$TINT" \
    "$WORK/huge.png" "$OUT/x.png"
expect_error "JPEG claiming 65000x65000" 1 "larger than diat handles" "$DIAT" apply -m "$TINT" \
    "$WORK/huge.jpg" "$OUT/x.png"
if [ -e "$OUT/x.png" ]; then fail "failed runs wrote no output"; else pass "failed runs wrote no output"; fi

# ---- atomic writes ----
cp "$IN/red-square.png" "$WORK/keep.png"
cp "$WORK/keep.png" "$WORK/keep-before.png"
expect_error "bad input keeps an existing output" 1 "truncated" "$DIAT" apply -m "$TINT" \
    "$WORK/truncated.png" "$WORK/keep.png"
cmp -s "$WORK/keep.png" "$WORK/keep-before.png" && pass "existing output untouched" ||
    fail "existing output untouched"
# A write that fails half-way (file size limit; SIGXFSZ ignored so write()
# fails with EFBIG) leaves the old file and no temporary behind.
run bash -c 'trap "" XFSZ; ulimit -f 8; exec "$@"' sh "$DIAT" apply -q -m "$TINT" \
    --box $ASTRO_BOX "$IN/astro-rgba16.png" "$WORK/keep.png"
if [ "$rc" -eq 1 ] && grep -q '^diat: error: ' "$WORK/stderr"; then
    pass "write failure is an error"
else
    fail "write failure is an error (exit $rc)"
fi
cmp -s "$WORK/keep.png" "$WORK/keep-before.png" && pass "failed write keeps the old file" ||
    fail "failed write keeps the old file"
mkdir "$WORK/dir.png"
expect_error "output is a folder" 1 "dir.png" "$DIAT" apply -q -m "$TINT" --whole \
    "$IN/red-square.png" "$WORK/dir.png"
if ls "$WORK" | grep -q '\.tmp-'; then fail "no temporary files left"; else pass "no temporary files left"; fi
cp "$IN/red-square.png" "$WORK/inplace.png"
expect_ok "output may be the input" "$DIAT" apply -q -m "$TINT" --whole "$WORK/inplace.png" \
    "$WORK/inplace.png"
cmp -s "$WORK/inplace.png" "$OUT/square.png" && pass "in-place result equals the normal one" ||
    fail "in-place result equals the normal one"

# ---- faces: detection, --face, alignment ----
# Needs the shipped face models (models/ of the source tree, which an
# uninstalled diat finds; DIAT_SOURCE_ROOT is set by meson).
MODELS=${DIAT_SOURCE_ROOT:-}/models
if [ -r "$MODELS/face-detector-tiny.safetensors" ] && [ -r "$MODELS/face-landmarks-68.safetensors" ] &&
    [ -r "$IN/2008_002506.png" ]; then
    expect_ok "diat --help" "$DIAT" --help
    expect_output "main help lists detect" '^  detect IN'
    expect_ok "diat detect --help" "$DIAT" detect --help
    expect_output "detect help documents --overlay" -- '--overlay FILE'
    expect_ok "apply help documents --face" "$DIAT" apply --help
    expect_output "apply help documents --face" -- '--face N\|all'

    expect_ok "detect on a portrait" "$DIAT" detect --overlay "$OUT/astro-faces.png" \
        "$IN/astronaut.png"
    expect_output "one face, box and five key points" \
        '^face 1: box 8[0-2],3[6-8],5[6-9],5[4-6] score 0\.9[0-9]{2} eyes [0-9.]+,[0-9.]+ [0-9.]+,[0-9.]+ nose [0-9.]+,[0-9.]+ mouth [0-9.]+,[0-9.]+ [0-9.]+,[0-9.]+$'
    if [ "$(grep -c '^face ' "$WORK/stdout")" -eq 1 ]; then pass "exactly one face"; else fail "exactly one face"; fi
    expect_ok "detect overlay written" "$CMP" describe "$OUT/astro-faces.png"
    expect_output "detect overlay is RGB 8-bit" '^256x256 channels=3 depth=8 format=PNG$'
    expect_ok "detect on a group photo" "$DIAT" detect "$IN/2008_002506.png"
    expect_output "faces numbered from 1" '^face 2: box '
    cp "$WORK/stdout" "$WORK/group-faces.txt"
    expect_ok "detect in a box" "$DIAT" detect --box 70,20,100,110 "$IN/astronaut.png"
    expect_output "the box's face" '^face 1: box 8[0-2],3[6-8],'
    expect_error "detect: no face" 1 "no face found" "$DIAT" detect --overlay "$OUT/none.png" \
        "$IN/interlaced.png"
    if [ -e "$OUT/none.png" ]; then fail "detect wrote no overlay"; else pass "detect wrote no overlay"; fi
    expect_error "detect: missing detector file" 1 "no-such-detector" "$DIAT" detect \
        --detector "$WORK/no-such-detector.safetensors" "$IN/astronaut.png"
    # The lookup: DIAT_MODEL_PATH is tried first (here a folder of links).
    mkdir -p "$WORK/models"
    ln -s "$MODELS/face-detector-tiny.safetensors" "$MODELS/face-landmarks-68.safetensors" "$WORK/models/"
    expect_ok "models from DIAT_MODEL_PATH" env DIAT_MODEL_PATH="$WORK/nowhere:$WORK/models" \
        "$DIAT" detect "$IN/astronaut.png"

    # apply without --box: every face found, aligned, pasted back.
    expect_ok "apply finds the face" "$DIAT" apply -m "$TINT" -p 0.5 --mask "$OUT/auto-mask.png" \
        "$IN/astronaut.png" "$OUT/auto.png"
    if grep -q '1 face,' "$WORK/stderr"; then pass "one face edited"; else fail "one face edited"; fi
    expect_ok "auto: unmasked pixels bit-identical, masked changed" \
        "$CMP" untouched "$IN/astronaut.png" "$OUT/auto.png" "$OUT/auto-mask.png" --expect-change
    expect_ok "auto: the mask is at the face" "$CMP" coverage "$OUT/auto-mask.png" 81 37 58 55 \
        70 0.5 0.0
    expect_ok "aligned identity round trip" "$DIAT" apply -q -m "$FIXTURE" -p 0.9 \
        --mask "$OUT/auto-id-mask.png" "$IN/astronaut.png" "$OUT/auto-id.png"
    run "$CMP" untouched "$IN/astronaut.png" "$OUT/auto-id.png" "$OUT/auto-id-mask.png"
    if [ "$rc" -eq 0 ] && grep -q 'masked_changed=0 ' "$WORK/stdout" &&
        ! grep -q ' masked=0 ' "$WORK/stdout"; then
        pass "aligned identity T changes no pixel"
    else
        fail "aligned identity T changes no pixel"
    fi
    for depth in rgb16 graya8; do
        expect_ok "apply finds the face ($depth)" "$DIAT" apply -q -m "$TINT" \
            --mask "$OUT/auto-$depth-mask.png" "$IN/astro-$depth.png" "$OUT/auto-$depth.png"
        expect_ok "$depth: unmasked and alpha identical" "$CMP" untouched "$IN/astro-$depth.png" \
            "$OUT/auto-$depth.png" "$OUT/auto-$depth-mask.png"
    done

    # Two faces: both by default, one with --face (numbered as detect lists them).
    IFS=' ,' read -r _ _ _ F1X F1Y F1W F1H _ < <(grep '^face 1:' "$WORK/group-faces.txt")
    IFS=' ,' read -r _ _ _ F2X F2Y F2W F2H _ < <(grep '^face 2:' "$WORK/group-faces.txt")
    expect_ok "apply to all faces" "$DIAT" apply -m "$TINT" -p 0.5 --mask "$OUT/group-mask.png" \
        "$IN/2008_002506.png" "$OUT/group.png"
    if grep -q '2 faces,' "$WORK/stderr"; then pass "two faces edited"; else fail "two faces edited"; fi
    expect_ok "all: face 1 edited" "$CMP" coverage "$OUT/group-mask.png" "$F1X" "$F1Y" "$F1W" "$F1H" 0 0.3 1
    expect_ok "all: face 2 edited" "$CMP" coverage "$OUT/group-mask.png" "$F2X" "$F2Y" "$F2W" "$F2H" 0 0.3 1
    expect_ok "all: unmasked pixels identical" "$CMP" untouched "$IN/2008_002506.png" \
        "$OUT/group.png" "$OUT/group-mask.png" --expect-change
    expect_ok "apply --face 2" "$DIAT" apply -q -m "$TINT" -p 0.5 --face 2 \
        --mask "$OUT/face2-mask.png" "$IN/2008_002506.png" "$OUT/face2.png"
    expect_ok "--face 2: that face edited" "$CMP" coverage "$OUT/face2-mask.png" "$F2X" "$F2Y" "$F2W" \
        "$F2H" 0 0.3 1
    expect_ok "--face 2: face 1 untouched" "$CMP" coverage "$OUT/face2-mask.png" "$F1X" "$F1Y" "$F1W" \
        "$F1H" 0 0 1
    expect_output "--face 2: face 1 untouched" '^inside=0\.0000 '
    expect_error "--face beyond the faces found" 1 "only 2 faces" "$DIAT" apply -m "$TINT" \
        --face 3 "$IN/2008_002506.png" "$OUT/x.png"

    # --box: landmarks inside it; --no-align: its square as it is.
    expect_ok "apply --box aligns" "$DIAT" apply -q -m "$TINT" -p 0.5 --box $ASTRO_BOX \
        --mask "$OUT/box-aligned-mask.png" "$IN/astronaut.png" "$OUT/box-aligned.png"
    expect_ok "apply --box --no-align" "$DIAT" apply -q -m "$TINT" -p 0.5 --box $ASTRO_BOX \
        --no-align --mask "$OUT/box-square-mask.png" "$IN/astronaut.png" "$OUT/box-square.png"
    # The square of side 120 centred on the box: x 65..185, y 30..150.
    expect_ok "--no-align: mask inside the box's square" "$CMP" coverage \
        "$OUT/box-square-mask.png" 65 30 120 120 0 0.3 0
    if cmp -s "$OUT/box-aligned-mask.png" "$OUT/box-square-mask.png"; then
        fail "--box aligns (differs from the square)"
    else
        pass "--box aligns (differs from the square)"
    fi

    # No face: a clear error, nothing written.
    expect_error "apply: no face" 1 "no face found" "$DIAT" apply -m "$TINT" \
        "$IN/interlaced.png" "$OUT/noface.png"
    if [ -e "$OUT/noface.png" ]; then fail "no face: nothing written"; else pass "no face: nothing written"; fi
else
    echo "skip faces: no face models in '$MODELS' (DIAT_SOURCE_ROOT)"
fi

# ---- inputs never modified ----
if (cd "$IN" && sha256sum --quiet -c "$WORK/inputs.sha256") >"$WORK/stdout" 2>"$WORK/stderr"; then
    pass "input files unchanged"
else
    fail "input files unchanged"
fi

summary
