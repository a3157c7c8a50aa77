#!/bin/sh
# A model card's picture: the model applied by `diat apply` to the
# project's public-domain test photos (tests/data/photos, none from CelebA,
# so the picture may be committed), each detected face shown before and
# after as `diat apply` edits it by default (the model's own mask threshold):
# inputs above results, six faces to a row.
#
#   models/photo-grid.sh MODEL.safetensors OUT.png [PHOTO ...]
#
# Default photos: the four dlib example photos and the astronaut. DIAT
# names the `diat` program (default build/tools/diat); needs ImageMagick's
# `convert` to cut and join the faces.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 MODEL.safetensors OUT.png [PHOTO ...]" >&2
    exit 2
fi
model=$1 out=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
photos=$here/../tests/data/photos
diat=${DIAT:-$here/../build/tools/diat}
[ $# -gt 0 ] || set -- "$photos/2008_001009.png" "$photos/2009_004587.png" \
    "$photos/2008_002506.png" "$photos/2008_002470.png" "$photos/astronaut.png"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=0
for photo in "$@"; do
    base=$(basename "$photo")
    "$diat" apply -q -m "$model" "$photo" "$work/$base.png"
    # Each face: the square of 1.6x its box around the box's centre.
    "$diat" detect "$photo" | while read -r _ _ _ box _; do
        echo "$box"
    done | tr ',' ' ' | while read -r x y w h; do
        side=$(((w > h ? w : h) * 8 / 5))
        cx=$((x + w / 2)) cy=$((y + h / 2))
        geometry=${side}x${side}+$((cx - side / 2))+$((cy - side / 2))
        echo "$photo $work/$base.png $geometry"
    done >>"$work/faces"
done
[ -s "$work/faces" ] || { echo "$0: no face found in the photos" >&2; exit 1; }
while read -r input result geometry; do
    n=$((n + 1))
    for side in input result; do
        eval src=\$$side
        convert "$src" -crop "$geometry" +repage -resize 128x128! "$work/$side-$(printf %03d $n).png"
    done
done <"$work/faces"
# Rows of six faces: an input strip, then its result strip.
row=0
while [ $((row * 6)) -lt $n ]; do
    set --
    for i in 1 2 3 4 5 6; do
        k=$(printf %03d $((row * 6 + i)))
        [ -f "$work/input-$k.png" ] && set -- "$@" "$k"
    done
    inputs="" results=""
    for k in "$@"; do
        inputs="$inputs $work/input-$k.png" results="$results $work/result-$k.png"
    done
    # shellcheck disable=SC2086 # the lists are space-free temporary paths
    convert $inputs +append "$work/row-$row-a.png"
    # shellcheck disable=SC2086
    convert $results +append "$work/row-$row-b.png"
    row=$((row + 1))
done
convert "$work"/row-*.png -background white -append "$work/grid.png"
mv "$work/grid.png" "$out"
echo "$out: $n faces"
