# A full or failing disk: compose, convert and adapt under the LD_PRELOAD
# shim tests/tools/shim/write_faults.c, which fails the Nth and later
# write/fsync/close/rename (ENOSPC or EIO). For several N each command exits
# 1 with one line naming the output, and leaves no output and no temporary
# behind (adapt keeps its checkpoint of the evaluations done, for --resume,
# once one was written). With no fault the same command succeeds.
. "$TOP/tests/cli/lib.sh"
ZOO="$TOP/examples/zoo"
case $O in /*) SHIM=$O/tests/tools/write_faults.so ;; *) SHIM=$TOP/$O/tests/tools/write_faults.so ;; esac
[ -f "$SHIM" ] || fail "missing $SHIM (make $O/tests/tools/write_faults.so)"
export OPENBLAS_NUM_THREADS=1
# under ASan the shim is preloaded ahead of ASan's runtime: allowed here
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
cd "$TMP"
mkdir work
cd work

# count CMD...: the number of faultable calls of a clean run (then removes its outputs)
count() {
    rm -f ../count
    LD_PRELOAD=$SHIM LH_FAULT_COUNT_FILE=../count "$@" >../out 2>../err || { cat ../err >&2; fail "clean run failed: $*"; }
    rm -rf ./* ./.[!.]* 2>/dev/null || true
    cat ../count
}
# faulted N ERRNO ALLOWED CMD...: exit 1, one line, only ALLOWED (a name or '') left
faulted() {
    n=$1 e=$2 allowed=$3; shift 3
    set +e
    LD_PRELOAD=$SHIM LH_FAULT_AFTER=$n LH_FAULT_ERRNO=$e "$@" >../out 2>../err
    got=$?
    set -e
    # After the final rename only descriptors are closed (the output lock,
    # directories): a fault there leaves a complete output, and exit 0 with
    # the outputs in place is right. Only the last calls may do that.
    if [ "$got" -eq 0 ] && [ "$n" -ge $((k - 3)) ] && [ -n "$(ls -A)" ] && [ -z "$(ls -A | grep '\.tmp\.')" ]; then
        rm -rf ./* 2>/dev/null || true
        return 0
    fi
    [ "$got" -eq 1 ] || { cat ../err >&2; fail "fault after $n ($e): '$*' exited $got, want 1"; }
    [ ! -s ../out ] || fail "fault after $n: stdout not empty"
    [ "$(wc -l <../err)" -eq 1 ] || { cat ../err >&2; fail "fault after $n: want one line on stderr"; }
    case $e in ENOSPC) grep -q "No space left on device" ../err ;; EIO) grep -q "Input/output error" ../err ;; esac ||
        { cat ../err >&2; fail "fault after $n: the message does not say $e"; }
    grep -q '\.tmp\.' ../err && { cat ../err >&2; fail "the message names a temporary path"; }
    left=$(ls -A | tr '\n' ' ')
    [ "$left" = "$allowed" ] || [ -z "$left" ] || fail "fault after $n ($e): left behind: $left"
    rm -rf ./* 2>/dev/null || true
}
# the fault points: the first few, a spread, the last few
points() {
    k=$1
    echo 0 1 2 3 $((k / 4)) $((k / 2)) $((3 * k / 4)) $((k - 3)) $((k - 2)) $((k - 1)) |
        tr ' ' '\n' | awk -v k="$k" '$1 >= 0 && $1 < k' | sort -un
}
run_all() { # run_all ALLOWED CMD...
    allowed=$1; shift
    k=$(count "$@")
    [ "$k" -gt 3 ] || fail "only $k faultable calls in: $*"
    i=0
    for n in $(points "$k"); do
        e=ENOSPC; [ $((i % 2)) -eq 1 ] && e=EIO
        faulted "$n" "$e" "$allowed" "$@"
        i=$((i + 1))
    done
    # and with no fault it works
    LD_PRELOAD=$SHIM "$@" >../out 2>../err || { cat ../err >&2; fail "no fault: '$*' failed"; }
    rm -rf ./* 2>/dev/null || true
}

M1="$ZOO/modules/add1" M3="$ZOO/modules/add3"
run_all "" "$LORAHUB" compose -o merged "$M1" "$M3"
run_all "" "$LORAHUB" compose -m ties-svd --rank 4 --dtype f16 -o merged "$M1" "$M3"
run_all "" "$LORAHUB" convert --dtype bf16 "$M1" converted
run_all "m.checkpoint.json " "$LORAHUB" adapt -q --base "$ZOO/base" --modules "$ZOO/modules" \
    --examples "$ZOO/tasks/add2/fewshot.jsonl" --budget 27 --preselect 2 -o m --report r.json
