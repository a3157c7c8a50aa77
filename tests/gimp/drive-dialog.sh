#!/usr/bin/env bash
# Works the plug-in's dialog under Xvfb (inside the chroot; called by
# run-in-chroot.sh while dialog_checks.py holds the dialog open):
#   drive-dialog.sh TITLE SHOT_PREFIX RESULTS
# waits for the window titled TITLE, screenshots it, raises p with the
# keyboard (the p slider has the focus when p is in use), checks that the
# preview changed, and presses Enter (OK). One PASS/FAIL line per check.
set -u
title=$1 prefix=$2 results=$3
pass() { echo "PASS $1" >>"$results"; }
fail() { echo "FAIL $1: $2" >>"$results"; }

window=$(timeout 90 xdotool search --sync --name "^${title}\$" 2>/dev/null | head -1)
if [ -z "$window" ]; then
  fail "dialog window \"$title\" appears" "no such window within 90 s"
  exit 0
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
crop="$((width * 45 / 100))x$((height * 80 / 100))+0+0"
changed=$(compare -metric AE -fuzz 2% \
            <(convert "$prefix-before.png" -crop "$crop" +repage png:-) \
            <(convert "$prefix-after.png" -crop "$crop" +repage png:-) null: 2>&1 | cut -d' ' -f1)
if [ "${changed%.*}" -gt 200 ] 2>/dev/null; then
  pass "moving p with the keyboard changes the preview ($changed pixels)"
else
  fail "moving p with the keyboard changes the preview" "only '$changed' pixels changed"
fi
xdotool key --window "$window" Return
