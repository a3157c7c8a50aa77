#!/bin/sh
# Copy a small CelebA subset (the first TRAIN train and VAL val faces of
# ../shared/data/celeba128, with their label files cut to match) into a
# folder that travels to the GPU machine with the device tool's `carry`,
# since ../shared does not travel. The folder must be git-ignored: CelebA is
# never committed (non-commercial research terms).
#
#   tests/cuda/make-device-data.sh [DEST] [TRAIN] [VAL] [ATTRIBUTE]
#   (defaults: .device/celeba128, 2400, 400)
#
# With ATTRIBUTE (a CelebA column, e.g. Eyeglasses), half of the train faces
# have it and half do not, so that a rare attribute still gets enough
# source faces for a training run on the GPU machine.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
src="$root/../shared/data/celeba128"
dest=${1:-$root/.device/celeba128}
train=${2:-2400}
val=${3:-400}
attribute=${4:-}
[ -d "$src/img_align_celeba" ] || { echo "no CelebA at $src" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$dest/img_align_celeba"
if [ -z "$attribute" ]; then
    awk -v t="$train" -v v="$val" '$2 == 0 && nt < t { nt++; print $1 } $2 == 1 && nv < v { nv++; print $1 }' \
        "$src/list_eval_partition.txt" >"$dest/names"
else
    column=$(sed -n 2p "$src/list_attr_celeba.txt" | tr ' ' '\n' | grep -v '^$' | grep -nx "$attribute" | cut -d: -f1)
    [ -n "$column" ] || { echo "no attribute $attribute" >&2; exit 1; }
    awk -v t="$train" -v v="$val" -v col="$((column + 1))" '
        NR == FNR { split_of[$1] = $2; next }
        FNR <= 2 { next }
        split_of[$1] == 0 && $col == 1 && nwith < t / 2 { nwith++; print $1; next }
        split_of[$1] == 0 && $col == -1 && nwithout < t / 2 { nwithout++; print $1; next }
        split_of[$1] == 1 && nv < v { nv++; print $1 }' \
        "$src/list_eval_partition.txt" "$src/list_attr_celeba.txt" >"$dest/names"
fi
while read -r name; do cp "$src/img_align_celeba/$name" "$dest/img_align_celeba/"; done <"$dest/names"
awk 'NR == FNR { keep[$1] = 1; next } keep[$1]' "$dest/names" "$src/list_eval_partition.txt" \
    >"$dest/list_eval_partition.txt"
awk 'NR == FNR { keep[$1] = 1; next } keep[$1]' "$dest/names" "$src/identity_CelebA.txt" \
    >"$dest/identity_CelebA.txt"
{
    wc -l <"$dest/names" | tr -d ' '
    sed -n 2p "$src/list_attr_celeba.txt"
    awk 'NR == FNR { keep[$1] = 1; next } FNR > 2 && keep[$1]' "$dest/names" "$src/list_attr_celeba.txt"
} >"$dest/list_attr_celeba.txt"
rm "$dest/names"
echo "$(ls "$dest/img_align_celeba" | wc -l) faces in $dest ($(du -sh "$dest" | cut -f1))"
