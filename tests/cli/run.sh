#!/bin/sh
# Runs every tests/cli/test-*.sh with LORAHUB (the binary) and a fresh
# scratch directory in TMP; prints "N passed, N failed" and fails if any did.
# A test passes when it exits 0. Tests use tests/cli/lib.sh helpers.
cd "$(dirname "$0")/../.." || exit 1
: "${LORAHUB:?set LORAHUB to the lorahub binary}"
: "${O:=build}"
export LORAHUB O
export TOP="$(pwd)"
pass=0; fail=0; failed=""
for t in tests/cli/test-*.sh; do
    [ -e "$t" ] || continue
    TMP=$(mktemp -d) ; export TMP
    if sh "$t" >"$TMP.log" 2>&1; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); failed="$failed $t"
        echo "--- FAIL $t"; tail -n 30 "$TMP.log"
    fi
    rm -rf "$TMP" "$TMP.log"
done
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
