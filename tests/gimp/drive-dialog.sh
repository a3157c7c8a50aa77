#!/usr/bin/env bash
# Works the plug-in's dialog under Xvfb (inside the chroot; called by
# run-in-chroot.sh while dialog_checks.py holds the dialog open):
#   drive-dialog.sh TITLE SHOT_PREFIX RESULTS
# waits for the window titled TITLE, screenshots it, raises p with the
# keyboard (the p slider has the focus when p is in use), checks that the
# preview changed, turns on the mask overlay and the before/after split for
# a third screenshot, and presses OK. One PASS/FAIL line per check.
set -u
title=$1 prefix=$2 results=$3
pass() { echo "PASS $1" >>"$results"; }
fail() { echo "FAIL $1: $2" >>"$results"; }

# Poll rather than `search --sync`: that gives up at once while the X server
# is still starting.
window=
for second in $(seq 90); do
  window=$(xdotool search --name "^${title}\$" 2>/dev/null | head -1)
  [ -n "$window" ] && break
  sleep 1
done
if [ -z "$window" ]; then
  fail "dialog window \"$title\" appears" "no such window within 90 s"
  exit 1
fi
pass "dialog window \"$title\" appears"
# The first edit runs in the background: wait for the preview to settle.
sleep 6
xdotool windowfocus --sync "$window" 2>/dev/null
import -window "$window" "$prefix-before.png"
[ -s "$prefix-before.png" ] && pass "screenshot $prefix-before.png" ||
  fail "screenshot $prefix-before.png" "import wrote nothing"

# Page Up raises p by the slider's page step; the preview re-renders from
# the cached edit without running the networks.
xdotool key --window "$window" --delay 200 Page_Up Page_Up
sleep 3
import -window "$window" "$prefix-after.png"
# The preview fills the left part of the dialog (the settings are on the
# right): count the pixels that changed there.
width=$(identify -format '%w' "$prefix-before.png")
height=$(identify -format '%h' "$prefix-before.png")
crop="$((width * 35 / 100))x$((height * 50 / 100))+0+0"
convert "$prefix-before.png" -crop "$crop" +repage "$prefix-crop-before.png"
convert "$prefix-after.png" -crop "$crop" +repage "$prefix-crop-after.png"
changed=$(compare -metric AE -fuzz 2% "$prefix-crop-before.png" "$prefix-crop-after.png" null: 2>&1 |
            cut -d' ' -f1)
rm -f "$prefix-crop-before.png" "$prefix-crop-after.png"
if [ "${changed%.*}" -gt 100 ] 2>/dev/null; then
  pass "moving p with the keyboard changes the preview ($changed pixels)"
else
  fail "moving p with the keyboard changes the preview" "only '$changed' pixels changed"
fi

# The overlay and the split, through their mnemonics (Show _mask,
# _Before/after split), for the screenshot users see in the README.
xdotool key --window "$window" --delay 300 alt+m alt+b
sleep 2
import -window "$window" "$prefix-overlay.png"

# OK through its mnemonic (the focus is on a check box now, where Enter
# would toggle it); Enter as a fallback for a translation without one.
xdotool key --window "$window" alt+o
for second in $(seq 10); do
  xdotool search --name "^${title}\$" >/dev/null 2>&1 || break
  sleep 1
  [ "$second" -eq 5 ] && xdotool key --window "$window" Tab Return
done
