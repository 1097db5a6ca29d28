#!/bin/sh
# examples/embed.c as a user builds it: against the staged install in
# $STAGE (make install DESTDIR=$STAGE PREFIX=/usr), with nothing but
# pkg-config's flags, run with the staged shared library; its three losses
# must be the ones `lorahub eval` prints for the same inputs.
# Environment: O (build dir), STAGE, CC, LDFLAGS, PKG_CONFIG, LORAHUB.
set -eu
fail() { echo "embed: FAIL: $*" >&2; exit 1; }
base=examples/zoo/base m1=examples/zoo/modules/add1 m2=examples/zoo/modules/add3
# an unseen task (the base answers its own tasks at a loss near 0, where the
# comparisons below would say little)
examples=examples/zoo/tasks/mix_reverse_add1/fewshot.jsonl
out=$O/embed-check
rm -rf "$out" && mkdir -p "$out"

[ "$(ls "$STAGE/usr/include")" = lorahub.h ] || fail "installed headers: $(ls "$STAGE/usr/include")"
flags=$(PKG_CONFIG_PATH="$STAGE/usr/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
        PKG_CONFIG_SYSROOT_DIR="$STAGE" $PKG_CONFIG --cflags --libs lorahub) ||
    fail "pkg-config does not find lorahub in $STAGE"
# shellcheck disable=SC2086 # flags are words
$CC -std=c11 -Wall -Wextra -Werror $LDFLAGS -o "$out/embed" examples/embed.c $flags ||
    fail "examples/embed.c does not build with: $flags"
readelf -d "$out/embed" | grep -q 'NEEDED.*liblorahub\.so\.0' || fail "embed is not linked to liblorahub.so.0"
LD_LIBRARY_PATH="$STAGE/usr/lib" "$out/embed" "$base" "$m1" "$m2" "$examples" >"$out/stdout" ||
    fail "embed exited $?"

"$LORAHUB" compose -m cat -w 0.5,0.5 -o "$out/cat" "$m1" "$m2" >/dev/null
eval_loss() { "$LORAHUB" eval --base "$base" --examples "$examples" "$@" | sed -n 's/^loss *//p'; }
want_base=$(eval_loss) want_m1=$(eval_loss --adapter "$m1") want_cat=$(eval_loss --adapter "$out/cat")
got() { sed -n "s/^$1 *loss \([^ ]*\).*/\1/p" "$out/stdout"; }
for pair in "base $want_base" "add1 $want_m1" "cat $want_cat"; do
    set -- $pair
    [ "$(got "$1")" = "$2" ] || { cat "$out/stdout" >&2; fail "$1: embed says '$(got "$1")', lorahub eval $2"; }
done
# The EXAMPLES program of man/lorahub.3, as written, in a directory laid
# out as it assumes; its batched losses may differ from eval's in the last
# float bits only.
sed -n '/^\.Sh EXAMPLES/,/^\.Ed/p' man/lorahub.3 | sed '1,/^\.Bd/d; /^\.Ed/d; s/\\e/\\/g' >"$out/man3.c"
grep -q '^int main' "$out/man3.c" || fail "no program in the EXAMPLES of man/lorahub.3"
# shellcheck disable=SC2086
$CC -std=c11 -Wall -Wextra -Werror $LDFLAGS -o "$out/man3" "$out/man3.c" $flags ||
    fail "the EXAMPLES program of man/lorahub.3 does not build"
ln -s "$(pwd)/examples/zoo" "$out/zoo" && cp "$examples" "$out/fewshot.jsonl"
(cd "$out" && LD_LIBRARY_PATH="$STAGE/usr/lib" ./man3) >"$out/man3.out" || fail "man/lorahub.3's example exited $?"
awk -v b="$want_base" -v c="$want_cat" '
    { gsub(",", "") } $1 == "base" && $3 == "cat" && ($2 - b) ^ 2 < 1e-8 && ($4 - c) ^ 2 < 1e-8 { ok = 1 }
    END { exit !ok }' "$out/man3.out" || fail "man/lorahub.3's example printed '$(cat "$out/man3.out")'"

echo "embed: built with pkg-config against the staged install; base $want_base, add1 $want_m1, cat $want_cat as lorahub eval"
