#!/usr/bin/env bash
# The generated bash completion offers every command `qmpkit --help` lists (and each command's
# subcommands), the options of the command being typed, and skips the values of options; the
# generated man page has a section for every command. A unit test: no qemu.
# Usage: completion_test.sh QMPKIT
set -euo pipefail
qmpkit=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$qmpkit" --generate bash-completion "$tmp/qmpkit"
"$qmpkit" --generate man "$tmp/qmpkit.1"

# The commands and aliases a --help lists (CLI11: after "Subcommands:", in groups of their own
# too, each line the names, then two spaces or more and the description).
commands_of() {
  "$qmpkit" "$@" --help | awk '/^Subcommands:/ {on = 1} on && /^  [a-z]/ {
    sub(/^  /, ""); split($0, f, /  +/); gsub(/,/, " ", f[1]); print f[1] }' | tr ' ' '\n' |
    grep .
}
# The first name of each (aliases aside).
primary_commands_of() {
  "$qmpkit" "$@" --help | awk '/^Subcommands:/ {on = 1} on && /^  [a-z]/ {
    sub(/^  /, ""); split($0, f, /[ ,]+/); print f[1] }'
}
# What the completion offers for the words after `qmpkit` (the last one being typed).
complete_words() {
  COMP_WORDS=(qmpkit "$@")
  COMP_CWORD=$#
  COMPREPLY=()
  _qmpkit
  printf '%s\n' "${COMPREPLY[@]}"
}
# shellcheck disable=SC1091
source "$tmp/qmpkit"

top=$(commands_of)
[ "$(wc -l <<<"$top")" -ge 20 ] || fail "qmpkit --help lists only: $top"
offered=$(complete_words "")
for c in $top; do
  grep -qx -- "$c" <<<"$offered" || fail "'qmpkit <TAB>' does not offer $c"
  for sub in $(commands_of "$c"); do
    grep -qx -- "$sub" <<<"$(complete_words "$c" "")" ||
      fail "'qmpkit $c <TAB>' does not offer $sub"
  done
done
for c in $(primary_commands_of); do
  grep -qF ".SS \"qmpkit ${c//-/\\-}\"" "$tmp/qmpkit.1" || fail "the man page has no section for $c"
done
for c in $offered; do
  grep -qx -- "$c" <<<"$top" || fail "'qmpkit <TAB>' offers $c, which --help does not list"
done

grep -qx "snapshot" <<<"$(complete_words snap)" || fail "'qmpkit snap<TAB>'"
grep -qx -- "--disk-only" <<<"$(complete_words snapshot create tiny --disk)" ||
  fail "'qmpkit snapshot create tiny --disk<TAB>'"
grep -qx -- "--json" <<<"$(complete_words snapshot create --js)" ||
  fail "global options after a command"
# An option's value is not taken for a command.
grep -qx "snapshot" <<<"$(complete_words --state-dir /tmp snap)" || fail "--state-dir VALUE"
grep -qx "create" <<<"$(complete_words --state-dir snapshot snapshot cr)" ||
  fail "a value that looks like a command"

[ "$failures" -eq 0 ] && echo "completion and man page: every command of --help is there"
exit "$failures"
