# Helpers for CLI tests (sourced). Each test runs with set -e in $TMP.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_exit CODE cmd... : run, capture stdout/stderr into $TMP/out, $TMP/err
expect_exit() {
    want=$1; shift
    set +e; "$@" >"$TMP/out" 2>"$TMP/err"; got=$?; set -e
    [ "$got" -eq "$want" ] || { cat "$TMP/err" >&2; fail "'$*' exited $got, want $want"; }
}
# an error must be one line on stderr and nothing on stdout
expect_one_line_error() {
    [ ! -s "$TMP/out" ] || fail "stdout not empty: $(head -c 200 "$TMP/out")"
    n=$(wc -l <"$TMP/err")
    [ "$n" -eq 1 ] || { cat "$TMP/err" >&2; fail "stderr has $n lines, want 1"; }
}
# zoo_recorded RESULTS_JSON SECTION TASK KEY: a module's number as a zoo build recorded it
# (results.json of tools/zoo or tools/zoo_t5: indent 1, sorted keys, SECTION ("modules",
# "mos") -> task -> {KEY: ...})
zoo_recorded() {
    awk -v s="$2" -v t="$3" -v k="$4" '
        $0 == " \"" s "\": {" { inm = 1; next }
        inm && /^ [^ ]/ { inm = 0 }
        inm && /^  "/ { cur = $1; gsub(/[":]/, "", cur) }
        inm && cur == t && $1 == "\"" k "\":" { v = $2; sub(/,$/, "", v); print v; exit }' "$1"
}
# near A B ABS REL: A and B are numbers and |A - B| <= ABS + REL * |B|
near() {
    awk -v a="$1" -v b="$2" -v e="$3" -v r="$4" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b
        exit !(a != "" && b != "" && a == a + 0 && b == b + 0 && d <= e + r * m) }'
}
expect_err_contains() { grep -qF -- "$1" "$TMP/err" || { cat "$TMP/err" >&2; fail "stderr lacks '$1'"; }; }
expect_out_contains() { grep -qF -- "$1" "$TMP/out" || { cat "$TMP/out" >&2; fail "stdout lacks '$1'"; }; }
