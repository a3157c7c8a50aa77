#!/usr/bin/env bash
# Builds and tests the GIMP 3 plug-in inside a Debian 13 (trixie) chroot,
# because the host (Debian 12) has only GIMP 2.10. Called by .ci/run.
#
#   1. the chroot: made with debootstrap when missing, packages topped up;
#   2. mounts: /proc, /dev (rbind, made rslave) and the repository at /src,
#      each undone on exit if this script made it;
#   3. build-gimp/: meson setup + ninja + meson install inside the chroot, the
#      plug-in going into a test GIMP profile (build-gimp/profile, with
#      GIMP3_DIRECTORY and a writable HOME so the user's profile is never
#      touched); the fixture models go into the profile's diat-models/;
#   4. the plug-in's own meson tests (core pipeline, catalogues) in the chroot;
#   5. headless checks in gimp-console via python-fu-eval
#      (tests/gimp/headless_checks.py);
#   6. the dialog under Xvfb, in English and in Simplified Chinese
#      (dialog_checks.py + drive-dialog.sh), screenshots kept in build-gimp/.
# Prints one line per check and ends with "N passed, N failed"; exits 1 when
# anything failed. Every GIMP run is wrapped in `timeout`.
set -u
repo=$(cd "$(dirname "$0")/../.." && pwd)
root=${DIAT_CHROOT:-/var/cache/diat-chroot/trixie}
mirror=${DIAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=(gimp libgimp-3.0-dev libgegl-dev libgtk-3-dev libopenblas-dev libjansson-dev libpng-dev
          libjpeg-dev libcairo2-dev meson ninja-build gcc pkg-config xvfb xauth xdotool imagemagick
          gettext python3 python3-gi gir1.2-gimp-3.0 locales)
# Only for legible Chinese in the zh_CN screenshot; its absence fails nothing.
optional_packages=(fonts-wqy-microhei)
build=build-gimp
passed=0 failed=0
started=$SECONDS

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
step_time() { echo "  ($1: $((SECONDS - $2)) s)"; }
summary() {
  echo "GIMP plug-in tests took $((SECONDS - started)) s"
  echo "${passed} passed, ${failed} failed"
}

if [ "$(id -u)" -ne 0 ]; then
  fail "GIMP plug-in tests" "need root for chroot and mount"
  summary; exit 1
fi

# ---- 1. the chroot ----------------------------------------------------------
t=$SECONDS
if [ ! -x "$root/usr/bin/apt-get" ]; then
  echo "creating the Debian 13 chroot in $root (debootstrap, a few minutes)"
  if ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1
  fi
  mkdir -p "$root"
  if ! debootstrap --variant=minbase trixie "$root" "$mirror" >"/tmp/diat-debootstrap.log" 2>&1; then
    fail "create the Debian 13 chroot" \
      "debootstrap failed (no network or mirror?); see /tmp/diat-debootstrap.log"
    summary; exit 1
  fi
fi
step_time "chroot present" "$t"

# ---- 2. mounts, undone on exit --------------------------------------------------
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount -R "${mounted[$i]}" 2>/dev/null || umount -lR "${mounted[$i]}" 2>/dev/null ||
      echo "warning: could not unmount ${mounted[$i]}"
  done
  [ -n "${xvfb_pid:-}" ] && kill "$xvfb_pid" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! mountpoint -q "$root/proc"; then
  mount -t proc proc "$root/proc" && mounted+=("$root/proc")
fi
if ! mountpoint -q "$root/dev"; then
  # rslave: unmounting the copy must never unmount the host's /dev/pts etc.
  mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev" && mounted+=("$root/dev")
fi
mkdir -p "$root/src"
mount --bind "$repo" "$root/src" && mounted+=("$root/src")
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null

in_chroot() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
                LANG=C.UTF-8 "$@"; }

t=$SECONDS
missing=$(in_chroot dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>&1 |
            grep -v 'install ok installed' | awk '{print $1}' | sed 's/dpkg-query://')
missing_optional=$(in_chroot dpkg-query -W -f='${Package} ${Status}\n' "${optional_packages[@]}" 2>&1 |
            grep -v 'install ok installed' | awk '{print $1}' | sed 's/dpkg-query://')
if [ -n "$missing$missing_optional" ]; then
  echo "installing into the chroot: ${packages[*]} ${optional_packages[*]}"
  in_chroot env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1
  if [ -n "$missing" ] && ! in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
       --no-install-recommends "${packages[@]}" >/tmp/diat-chroot-apt.log 2>&1; then
    fail "install GIMP 3 and the build tools in the chroot" \
      "apt-get failed (no network?); see /tmp/diat-chroot-apt.log"
    summary; exit 1
  fi
  in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${optional_packages[@]}" >/dev/null 2>&1 || echo "note: no CJK font; zh_CN text may not render"
fi
# The zh_CN run needs a real zh_CN locale: glibc ignores LANGUAGE under C.UTF-8.
if ! in_chroot locale -a 2>/dev/null | grep -qi '^zh_CN\.utf-\?8$'; then
  in_chroot localedef -i zh_CN -f UTF-8 zh_CN.UTF-8 >/dev/null 2>&1 ||
    echo "note: could not generate the zh_CN.UTF-8 locale"
fi
step_time "packages" "$t"

# ---- 3. build and install into a test profile --------------------------------------
t=$SECONDS
profile=/src/$build/profile
if in_chroot sh -c "cd /src && { [ -f $build/build.ninja ] || meson setup $build -Dtrainer=disabled \
       -Dfuzz=disabled -Dplugin=enabled -Dprefix=/src/$build/install \
       -Dgimp-plugin-dir=$profile/plug-ins; } >/tmp/diat-$build-setup.log 2>&1" &&
   in_chroot sh -c "cd /src && ninja -C $build >$build/ninja.log 2>&1 && \
       meson install -C $build --quiet >$build/install.log 2>&1"; then
  pass "build and install the plug-in in Debian 13 (GIMP $(in_chroot pkg-config --modversion gimp-3.0))"
else
  fail "build and install the plug-in" "see $build/ninja.log and $root/tmp/diat-$build-setup.log"
  tail -20 "$repo/$build/ninja.log" "$root/tmp/diat-$build-setup.log" 2>/dev/null
  summary; exit 1
fi
warnings=$(grep -c 'warning:' "$repo/$build/ninja.log")
[ "$warnings" -eq 0 ] && pass "build without compiler warnings" ||
  fail "build without compiler warnings" "$warnings warnings in $build/ninja.log"
if [ -x "$repo/$build/profile/plug-ins/diat-attribute-transfer/diat-attribute-transfer" ]; then
  pass "installed as plug-ins/diat-attribute-transfer/diat-attribute-transfer"
else
  fail "installed as plug-ins/diat-attribute-transfer/diat-attribute-transfer"
fi
for lang in de zh_CN; do
  mo=$repo/$build/profile/plug-ins/diat-attribute-transfer/locale/$lang/LC_MESSAGES/diat-gimp.mo
  [ -s "$mo" ] && pass "catalogue $lang installed beside the plug-in" ||
    fail "catalogue $lang installed beside the plug-in" "$mo missing"
done
step_time "build" "$t"

# The user's models folder of the test profile holds the fixtures.
mkdir -p "$repo/$build/profile/diat-models" "$repo/$build/home"
cp "$repo/tests/data/fixture-tint-model.safetensors" "$repo/tests/data/fixture-model.safetensors" \
  "$repo/$build/profile/diat-models/"
rm -rf "$repo/$build/profile/plug-in-settings" "$repo/$build/profile/pluginrc"

# ---- 4. the plug-in's meson tests inside the chroot ---------------------------------
t=$SECONDS
for suite in plugin po; do
  if in_chroot sh -c "cd /src && meson test -C $build --suite $suite --print-errorlogs \
                        >$build/test-$suite.log 2>&1"; then
    pass "meson test --suite $suite (in the chroot)"
  else
    fail "meson test --suite $suite (in the chroot)" "see $build/test-$suite.log"
  fi
done
step_time "meson tests" "$t"

gimp_env=(GIMP3_DIRECTORY=$profile HOME=/src/$build/home DIAT_SOURCE_ROOT=/src
          XDG_RUNTIME_DIR=/src/$build/home NO_AT_BRIDGE=1 GIO_USE_VFS=local)
run_gimp() { # run_gimp RESULTS SCRIPT [ENV...]
  local results=$1 script=$2; shift 2
  in_chroot "${gimp_env[@]}" DIAT_GIMP_RESULTS="$results" "$@" timeout 240 gimp-console-3.0 -i -n \
    --quit --batch-interpreter=python-fu-eval -b "exec(open('$script').read())"
}
collect() { # collect RESULTS_FILE_ON_HOST EXPECTED_COUNT WHAT
  local file=$1 expected=$2 what=$3 lines
  lines=$(grep -cE '^(PASS|FAIL) ' "$file" 2>/dev/null || true)
  while IFS= read -r line; do
    case "$line" in
      PASS\ *) pass "${line#PASS }" ;;
      FAIL\ *) rest=${line#FAIL }; fail "${rest%%: *}" "${rest#*: }" ;;
    esac
  done < <(grep -E '^(PASS|FAIL) ' "$file" 2>/dev/null)
  [ "${lines:-0}" -ge "$expected" ] ||
    fail "$what" "only ${lines:-0} of $expected checks reported (GIMP crashed or timed out?)"
}

# ---- 5. headless checks ----------------------------------------------------------
t=$SECONDS
results=/src/$build/headless-results.txt
rm -f "$repo/$build/headless-results.txt"
run_gimp "$results" /src/tests/gimp/headless_checks.py DIAT_EXAMPLE_OUT=/src/$build/example-after.png \
  >"$repo/$build/headless.log" 2>&1
status=$?
[ $status -eq 0 ] || echo "  gimp-console exited with $status (log: $build/headless.log)"
collect "$repo/$build/headless-results.txt" 16 "headless checks"
# The README's before/after pair (the test fixture: identity plus a red tint).
in_chroot convert \( /src/tests/data/photos/astronaut.png -gravity south -background white \
  -splice 0x20 -pointsize 12 -annotate +0+3 'original' \) \( /src/$build/example-after.png \
  -gravity south -background white -splice 0x20 -pointsize 12 \
  -annotate +0+3 'TEST FIXTURE (red tint), not a model' \) +append \
  /src/$build/before-after-fixture.png >/dev/null 2>&1
step_time "headless checks" "$t"

# ---- 6. the dialog under Xvfb --------------------------------------------------------
t=$SECONDS
in_chroot sh -c 'Xvfb :77 -screen 0 1400x1000x24 -nolisten tcp >/dev/null 2>&1 & echo $!' \
  >"$repo/$build/xvfb.pid"
xvfb_pid=$(cat "$repo/$build/xvfb.pid")
for second in $(seq 30); do  # until the server answers
  in_chroot DISPLAY=:77 xdotool getdisplaygeometry >/dev/null 2>&1 && break
  sleep 1
done
rm -rf "$repo/$build/profile/plug-in-settings"
for language in en zh_CN; do
  if [ "$language" = en ]; then title="Attribute Transfer"; lang_env=(LANGUAGE=en); else
    title="属性迁移"; lang_env=(LANG=zh_CN.UTF-8 LANGUAGE=zh_CN); fi
  results=/src/$build/dialog-$language-results.txt
  rm -f "$repo/$build/dialog-$language-results.txt"
  run_gimp "$results" /src/tests/gimp/dialog_checks.py DISPLAY=:77 DIAT_DIALOG_LANGUAGE=$language \
    "${lang_env[@]}" >"$repo/$build/dialog-$language.log" 2>&1 &
  gimp_pid=$!
  # A dialog the driver could not find would wait for its timeout: end it.
  in_chroot DISPLAY=:77 "${lang_env[@]}" bash /src/tests/gimp/drive-dialog.sh "$title" \
    "/src/$build/dialog-$language" "$results" || pkill -P "$gimp_pid" 2>/dev/null
  wait $gimp_pid
  collect "$repo/$build/dialog-$language-results.txt" 4 "dialog checks ($language)"
done
# Settings persist: the OK of the first run saved p as raised by the keyboard.
last=$(ls "$repo/$build/profile/plug-in-settings/"*diat-attribute-transfer* 2>/dev/null | head -1)
if [ -n "$last" ] && grep -q '(ratio 0\.[3-9]' "$last"; then
  pass "dialog settings persist (saved p: $(grep -o '(ratio [0-9.]*' "$last"))"
else
  fail "dialog settings persist" "no saved ratio above 0.2 in ${last:-plug-in-settings/}"
fi
kill "$xvfb_pid" 2>/dev/null; xvfb_pid=
step_time "dialog checks" "$t"

summary
[ "$failed" -eq 0 ]
