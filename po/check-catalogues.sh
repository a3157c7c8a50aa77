#!/bin/sh
# Checks the plug-in's translation catalogues (po/):
#   1. every file POTFILES names exists;
#   2. every C file under plugin/ and ui/ that marks a string for translation
#      is in POTFILES (a file left out would show untranslated text);
#   3. for every language in LINGUAS, the catalogue merged with a fresh
#      extraction compiles (msgfmt --check: syntax and printf formats) and
#      has no untranslated or fuzzy message: every user-visible string,
#      model labels included, is translated.
# Prints one line per failure and exits non-zero when there is one.
set -u
root=${1:?usage: check-catalogues.sh SOURCE_ROOT}
po="$root/po"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*"; failed=1; }

while IFS= read -r file; do
  case "$file" in ''|'#'*) continue ;; esac
  [ -f "$root/$file" ] || fail "POTFILES names $file, which does not exist"
done < "$po/POTFILES"

for file in $(cd "$root" && grep -lE '(^|[^A-Za-z0-9_])(_|N_|C_|NC_|ngettext)\(' \
                plugin/*.c plugin/*.h ui/*.c ui/*.h 2>/dev/null); do
  grep -qxF "$file" "$po/POTFILES" || fail "$file has translatable strings but is not in po/POTFILES"
done

(cd "$root" && xgettext --from-code=UTF-8 --language=C --add-comments=TRANSLATORS \
   --keyword=_ --keyword=N_ --keyword=C_:1c,2 --keyword=NC_:1c,2 --keyword=ngettext:1,2 \
   --files-from=po/POTFILES --output="$tmp/extracted.pot") || fail "xgettext failed"

for lang in $(grep -v '^#' "$po/LINGUAS"); do
  if [ ! -f "$po/$lang.po" ]; then fail "LINGUAS lists $lang but po/$lang.po is missing"; continue; fi
  msgfmt --check --output-file=/dev/null "$po/$lang.po" 2>"$tmp/$lang.err" ||
    { fail "po/$lang.po does not compile:"; cat "$tmp/$lang.err"; continue; }
  msgmerge --quiet --no-fuzzy-matching "$po/$lang.po" "$tmp/extracted.pot" -o "$tmp/$lang.po" ||
    { fail "msgmerge failed for $lang"; continue; }
  msgfmt --check --statistics --output-file=/dev/null "$tmp/$lang.po" 2>"$tmp/$lang.stats" ||
    { fail "po/$lang.po merged with the sources does not compile"; cat "$tmp/$lang.stats"; continue; }
  if grep -qE 'untranslated|fuzzy' "$tmp/$lang.stats"; then
    fail "po/$lang.po is incomplete: $(cat "$tmp/$lang.stats")"
    msgattrib --untranslated --no-obsolete "$tmp/$lang.po" 2>/dev/null | grep '^msgid ' | head -20
  else
    echo "ok: $lang: $(cat "$tmp/$lang.stats")"
  fi
done
exit $failed
