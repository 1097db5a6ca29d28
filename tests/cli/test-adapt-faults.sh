# lorahub adapt under faults (issue 14): NaN modules on the native backend,
# examples the exec backend must get as JSONL, resume fingerprints, the
# budget as a cap on everything scored, signals, outputs that would replace
# inputs, two runs on one output, and a misbehaving exec backend.
. "$TOP/tests/cli/lib.sh"
GEN="$TOP/$O/tests/tools/gen_peft"
TB="$TOP/$O/tests/tools/test_backend"
Z="$TOP/examples/zoo"
cd "$TMP"
mkdir hub tmp
TMPDIR="$TMP/tmp"; export TMPDIR
for i in 1 2 3; do "$GEN" hub/m$i $((i + 10)) --layers 1 --types q_proj:8:8,v_proj:8:6 --r 2 --alpha 4; done
printf '{"input":"a","output":"b"}\n{"input":"c","output":"d"}\n' >task.jsonl
TARGET="--target $TMP/hub/m1=0.6 --target $TMP/hub/m2=-0.3 --target $TMP/hub/m3=0.45"
BCMD="$TB $TARGET"
tmp_empty() { [ -z "$(ls -A "$TMP/tmp")" ] || { ls -A "$TMP/tmp" >&2; fail "temp dir left behind: $1"; }; }
num() { sed -n "s/^ *\"$1\": \([-0-9.eE+]*\),*\$/\1/p" "$2" | head -n 1; }

# ---- a NaN in a module on the native backend (bug 1) ----
# h/nan_A is add1 with an F16 NaN (00 7e) as the first value of its tensor data.
mkdir h
cp -r "$Z/modules/add1" h/nan_A
cp -r "$Z/modules/add1" h/add1
st=h/nan_A/adapter_model.safetensors
hlen=$(od -An -t u8 -N 8 "$st" | tr -d ' ')
printf '\000\176' | dd of="$st" bs=1 seek=$((8 + hlen)) conv=notrunc 2>/dev/null
cmp -s "$st" h/add1/adapter_model.safetensors && fail "the NaN was not written"
# the base model alone, through eval: the loss every w = 0 point must have
base_loss=$("$LORAHUB" eval --base "$Z/base" --examples "$Z/tasks/add2/fewshot.jsonl" | sed -n 's/^loss *//p')
[ -n "$base_loss" ] || fail "eval gave no loss"
for m in cat lorahub; do
    rm -rf o o.checkpoint.json t.tsv
    expect_exit 0 "$LORAHUB" adapt --base "$Z/base" --modules h --examples "$Z/tasks/add2/fewshot.jsonl" \
        --select search --nan-as-worst --preselect 0 --budget 5 -o o --trace t.tsv --method $m
    # columns: evaluation loss objective add1 nan_A ms
    awk -F'\t' -v b="$base_loss" 'NR > 1 {
        zero = ($4 + 0 == 0 && $5 + 0 == 0); with_nan = ($5 + 0 != 0)
        if (zero && ($2 - b > 1e-5 || b - $2 > 1e-5)) { print "w = 0 loss " $2 ", base " b; bad = 1 }
        if (with_nan && ($2 != "nan" || $3 != 1000000000)) { print "NaN candidate: " $0; bad = 1 }
        if (!with_nan && ($2 == "nan" || $2 + 0 < 1e-3 || $3 + 0 > 1e6)) { print "finite candidate: " $0; bad = 1 }
        n_nan += with_nan; n++ }
        END { exit bad || n != 5 || n_nan == 0 }' t.tsv || fail "$m: trace with a NaN module: $(cat t.tsv)"
    [ -f o/adapter_model.safetensors ] || fail "$m: no adapter written"
done

# ---- the exec backend always gets a JSONL file lorahub wrote (bug 3) ----
printf -- '- input: a\n  output: b\n- input: c\n  output: d\n' >task.yaml
printf '[{"input":"a","output":"b"},{"input":"c","output":"d"}]' >task-list.json
for ex in task.yaml task-list.json; do
    expect_exit 0 "$LORAHUB" adapt --modules hub --examples $ex --backend-cmd "$BCMD --strict-examples" \
        --budget 3 --report ex.json --force
done
# a pipe: the child cannot open lorahub's /dev/stdin
cat task.jsonl | "$LORAHUB" adapt --modules hub --examples /dev/stdin \
    --backend-cmd "$BCMD --strict-examples" --budget 3 --report ex.json --force 2>err.txt ||
    fail "examples from a pipe: $(cat err.txt)"
tmp_empty "examples copies"

# ---- --resume knows modules by their contents, not name and size (bug 4) ----
mkdir swap
for i in 1 2; do cp -r hub/m$i swap/m$i; done
[ "$(wc -c <swap/m1/adapter_model.safetensors)" -eq "$(wc -c <swap/m2/adapter_model.safetensors)" ] ||
    fail "the swapped modules differ in size"
expect_exit 0 "$LORAHUB" adapt --modules swap --examples task.jsonl --backend-cmd "$BCMD" --preselect 0 \
    --method cat --budget 6 -o sw
mv swap/m1 swap/x && mv swap/m2 swap/m1 && mv swap/x swap/m2
expect_exit 2 "$LORAHUB" adapt --modules swap --examples task.jsonl --backend-cmd "$BCMD" --preselect 0 \
    --method cat --budget 6 -o sw --resume
expect_one_line_error
expect_err_contains "module 'm1' is not the one the checkpoint was made with"
# swapped back: the same contents resume
mv swap/m1 swap/x && mv swap/m2 swap/m1 && mv swap/x swap/m2
expect_exit 0 "$LORAHUB" adapt --modules swap --examples task.jsonl --backend-cmd "$BCMD" --preselect 0 \
    --method cat --budget 6 -o sw --resume --report sw.json
[ "$(num replayed sw.json)" -eq 6 ] || fail "resume of unchanged modules replayed $(num replayed sw.json)"

# ---- exec: a signal by name, negative losses, control characters, the process group, timeout 0 ----
xfail_run() { # xfail_run TEXT backend-args...: exit 1, one line, naming TEXT, nothing left
    text=$1; shift
    rm -rf bad bad.checkpoint.json
    expect_exit 1 "$LORAHUB" adapt --modules hub --examples task.jsonl --backend-cmd "$TB $*" --budget 4 -o bad
    # ours is the last line (sh may first say "Segmentation fault": the child's stderr is the user's)
    [ ! -s out ] || fail "stdout not empty"
    tail -n 1 err | grep -qF -- "$text" || { cat err >&2; fail "last line lacks '$text'"; }
    tmp_empty "$*"
    [ ! -e bad ] || fail "output written after a backend failure ($*)"
}
xfail_run "killed by SIGSEGV" --segv
"$LORAHUB" adapt --modules hub --examples task.jsonl --backend-cmd "exec $TB --segv" --budget 4 \
    --report segv.json 2>err || true
tail -n 1 err | grep -qF "was killed by SIGSEGV before answering 'score'" || fail "exec'd child: $(cat err)"
xfail_run "is -0.5: a loss is never negative" --negative
esc=$(printf '\033')
xfail_run 'boom \x1b[31mred' --error "'boom ${esc}[31mred'"
grep -q "$esc" err && fail "a control character reached the terminal: $(od -c err | head -3)"
# a grandchild of the backend's shell does not outlive the run
expect_exit 0 "$LORAHUB" adapt --modules hub --examples task.jsonl \
    --backend-cmd "sleep 60 & echo \$! >$TMP/gc.pid; $BCMD" --budget 3 --report gc.json
gc=$(cat gc.pid)
i=0; while kill -0 "$gc" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$gc" 2>/dev/null && { kill "$gc"; fail "the backend's grandchild $gc outlived the run"; }
# --backend-timeout 0 is refused (it is not "no timeout"), by adapt and by eval
expect_exit 2 "$LORAHUB" adapt --modules hub --examples task.jsonl --backend-cmd "$BCMD" --budget 3 \
    --report t0.json --backend-timeout 0
expect_one_line_error
expect_err_contains "backend-timeout"
expect_exit 2 "$LORAHUB" eval --backend-cmd "$BCMD" --examples task.jsonl --backend-timeout 0
expect_err_contains "backend-timeout"

# ---- --force never replaces an input; outputs do not coincide ----
refuse_out() { # refuse_out TEXT adapt-options...
    text=$1; shift
    expect_exit 2 "$LORAHUB" adapt --modules hub --examples task.jsonl --backend-cmd "$BCMD" --budget 3 "$@"
    expect_one_line_error
    expect_err_contains "$text"
}
refuse_out "output directory 'hub' would replace the modules 'hub'" -o hub --force
[ -f hub/m1/adapter_model.safetensors ] || fail "-o hub --force touched the hub"
refuse_out "output directory 'hub/new'" -o hub/new
refuse_out "output directory '.'" -o . --force
refuse_out "report 'task.jsonl' would replace the examples" --report task.jsonl --force
refuse_out "would replace the module 'hub/m2'" --modules hub/m1,hub/m2 --weights-out hub/m2/w.tsv
refuse_out "would replace the base model 'hub/m3'" --modules hub/m1,hub/m2 --backend exec --base hub/m3 \
    --report hub/m3/r.json
refuse_out "report 'same.json' and trace './same.json' are one path" --report same.json --trace ./same.json
refuse_out "output directory 'od' and checkpoint 'od/ck.json'" -o od --checkpoint od/ck.json
[ ! -e od ] && [ ! -e same.json ] || fail "a refused run wrote something"
cmp -s task.jsonl - <<EOT || fail "the examples changed"
{"input":"a","output":"b"}
{"input":"c","output":"d"}
EOT

# ---- two runs on one output: the second exits 1 and touches nothing ----
rm -rf lk lk.checkpoint.json lk.tsv
"$LORAHUB" adapt --modules hub --examples task.jsonl --backend-cmd "$BCMD --hang-after 2" --preselect 0 \
    --method cat --budget 30 -o lk --trace lk.tsv --backend-timeout 60 2>lk.err &
pid=$!
i=0; while [ $i -lt 600 ] && ! { [ -f lk.checkpoint.json ] && [ "$(grep -c '"wx"' lk.checkpoint.json)" -ge 2 ]; }; do
    sleep 0.1; i=$((i + 1)); done
cp lk.checkpoint.json ck.before
ls lk.tsv.tmp.* >/dev/null 2>&1 || fail "the first run's trace is not being written"
expect_exit 1 "$LORAHUB" adapt --modules hub --examples task.jsonl --backend-cmd "$BCMD" --preselect 0 \
    --method cat --budget 3 -o lk --trace lk.tsv --force
expect_one_line_error
expect_err_contains "output directory 'lk' is being written by another lorahub run (pid $pid)"
cmp -s ck.before lk.checkpoint.json || fail "the second run replaced the first run's checkpoint"
[ ! -e lk.tsv ] && [ ! -e lk ] || fail "the second run wrote the trace or the output"
kill -INT $pid
set +e; wait $pid; rc=$?; set -e
[ "$rc" -eq 130 ] || fail "first run: exit $rc: $(cat lk.err)"
[ -f lk.tsv ] && [ -f lk/adapter_model.safetensors ] || fail "the first run's outputs are missing"
[ ! -e lk.lock ] && [ ! -e lk.checkpoint.json.lock ] && [ ! -e lk.tsv.lock ] || fail "lock files left behind"

# ---- signals: SIGTERM and SIGHUP as SIGINT; nothing half-written left ----
# wait_evals FILE N: until the checkpoint FILE records N evaluations (60 s at most: a loaded machine)
wait_evals() {
    i=0; while [ $i -lt 600 ] && ! { [ -f "$1" ] && [ "$(grep -c '"wx"' "$1")" -ge "$2" ]; }; do
        sleep 0.1; i=$((i + 1)); done
    [ $i -lt 600 ] || fail "$1 never reached $2 evaluations: $(cat sg.err)"
}
no_temps() { ! ls ./*.tmp.* >/dev/null 2>&1 || fail "temporaries left ($1): $(ls -d ./*.tmp.*)"; tmp_empty "$1"; }
for sig_n in TERM:15 HUP:1; do
    sig=${sig_n%:*}
    rm -rf sg sg.checkpoint.json sg.tsv sg.json sg.svg
    "$LORAHUB" adapt --modules hub --examples task.jsonl --backend-cmd "$BCMD --hang-after 3" --preselect 0 \
        --method cat --budget 30 -o sg --trace sg.tsv --report sg.json --backend-timeout 60 2>sg.err &
    pid=$!
    wait_evals sg.checkpoint.json 3
    kill -$sig $pid
    set +e; wait $pid; rc=$?; set -e
    want=$((128 + ${sig_n#*:}))
    [ "$rc" -eq "$want" ] || fail "SIG$sig: exit $rc, want $want: $(cat sg.err)"
    grep -q "interrupted after 3 evaluations; best so far written (resume from 'sg.checkpoint.json'" sg.err ||
        fail "SIG$sig message: $(cat sg.err)"
    [ -f sg/adapter_model.safetensors ] && [ "$(wc -l <sg.tsv)" -eq 4 ] || fail "SIG$sig: outputs"
    grep -q '"stop_reason": "interrupted"' sg.json || fail "SIG$sig: report"
    no_temps "SIG$sig"
done
# SIGINT while the modules are scored alone: no checkpoint promised, no zero adapter
mkdir big
i=1; while [ $i -le 5 ]; do "$GEN" big/b$i $i --layers 1 --types q_proj:8:8 --r 1; i=$((i + 1)); done
"$LORAHUB" adapt --modules big --examples task.jsonl --backend-cmd "$TB --hang-after 0" \
    --select best-single -o pre --report pre.json --trace pre.tsv --backend-timeout 60 2>pre.err &
pid=$!
sleep 1
kill -INT $pid
set +e; wait $pid; rc=$?; set -e
[ "$rc" -eq 130 ] || fail "SIGINT in preselection: exit $rc: $(cat pre.err)"
[ "$(wc -l <pre.err)" -eq 1 ] || fail "SIGINT in preselection: $(cat pre.err)"
grep -q "interrupted while scoring the modules alone (0 of 5 scored), before any search; nothing written" pre.err ||
    fail "SIGINT in preselection: $(cat pre.err)"
grep -q "resume" pre.err && fail "a checkpoint was promised: $(cat pre.err)"
for f in pre pre.json pre.tsv pre.checkpoint.json pre.lock; do [ ! -e $f ] || fail "SIGINT in preselection wrote $f"; done
no_temps "SIGINT in preselection"
# stale temporaries of the same outputs are removed at start (only those)
mkdir st.tmp.ab12cd st.tmp.keep-me
: >st.tmp.ab12cd/adapter_model.safetensors
: >st.json.tmp.Zz0099
expect_exit 0 "$LORAHUB" adapt --modules hub --examples task.jsonl --backend-cmd "$BCMD" --budget 3 \
    -o st --report st.json
[ ! -e st.tmp.ab12cd ] && [ ! -e st.json.tmp.Zz0099 ] || fail "stale temporaries kept"
[ -d st.tmp.keep-me ] || fail "a directory that is not a temporary of ours was removed"
rmdir st.tmp.keep-me
# a compose ended by SIGTERM while it writes leaves nothing; the next one starts clean
mkdir bigm
for i in 1 2; do "$GEN" bigm/m$i $i --layers 8 --types q_proj:4096:4096,v_proj:4096:4096 --r 32; done
caught=0; tries=0
while [ $caught -eq 0 ] && [ $tries -lt 5 ]; do
    tries=$((tries + 1)); rm -rf cbig
    "$LORAHUB" compose -m cat -w 0.5,0.5 -o cbig bigm/m1 bigm/m2 >/dev/null 2>cbig.err &
    pid=$!
    # until its temporary exists (or it is done), then stop it there
    while kill -0 $pid 2>/dev/null && ! ls -d cbig.tmp.* >/dev/null 2>&1; do :; done
    kill -STOP $pid 2>/dev/null || true
    if ls -d cbig.tmp.* >/dev/null 2>&1; then caught=1; kill -TERM $pid; fi
    kill -CONT $pid 2>/dev/null || true
    set +e; wait $pid; rc=$?; set -e
done
[ $caught -eq 1 ] || fail "compose always finished before the signal ($tries tries)"
[ "$rc" -eq 143 ] || fail "compose after SIGTERM: exit $rc: $(cat cbig.err)"
[ ! -e cbig ] && [ ! -e cbig.lock ] || fail "a killed compose left its output or lock"
no_temps "SIGTERM during compose"
# a killed -9 compose's temporary is removed by the next compose of that output
mkdir cbig.tmp.x1y2z3
expect_exit 0 "$LORAHUB" compose -m cat -w 0.5,0.5 -o cbig hub/m1 hub/m2
[ ! -e cbig.tmp.x1y2z3 ] || fail "compose kept a stale temporary"

# ---- the budget bounds everything the backend scores (+ the one re-score) ----
scored() { awk '{ s += $1 } END { print s + 0 }' "$1"; }
# budget_run WANT_SCORED WANT_KEPT adapt-options...: the backend's own count
budget_run() {
    n_want=$1; k_want=$2; shift 2
    rm -f b.log bw.tsv bud.json
    expect_exit 0 "$LORAHUB" adapt --examples task.jsonl --backend-cmd "$TB --log $TMP/b.log" \
        --weights-out bw.tsv --report bud.json --force "$@"
    [ "$(scored b.log)" -eq "$n_want" ] || fail "$*: the backend scored $(scored b.log), want $n_want"
    [ "$(num scored bud.json)" -eq "$n_want" ] || fail "$*: report: scored $(num scored bud.json), want $n_want"
    [ "$(wc -l <bw.tsv)" -eq "$k_want" ] || fail "$*: searched $(wc -l <bw.tsv) modules, want $k_want"
}
mkdir five many
for i in 1 2 3 4 5; do "$GEN" five/f$i $((i + 40)) --layers 1 --types q_proj:8:8 --r 1; done
i=1; while [ $i -le 22 ]; do "$GEN" many/n$i $((i + 60)) --layers 1 --types q_proj:8:8 --r 1; i=$((i + 1)); done
# the issue's case: 5 named modules, a search of 60: all 5 searched, 60 + the re-score
budget_run 61 5 --modules five --method cat --optimizer cobyla --budget 60
[ "$(num total_evaluations bud.json)" -eq 61 ] || fail "report: total_evaluations $(num total_evaluations bud.json)"
# 22 modules, budget 40: 92 needed for all (4 (22 + 1)), so 22 singles, the best 3 with 18
budget_run 41 3 --modules many --method cat --budget 40
[ "$(num search_budget bud.json)" -eq 18 ] && [ "$(num evaluations bud.json)" -eq 18 ] || fail "many: search budget"
# CMA-ES (a population of 8 at n = 5, rule 32) over 5 with 12: preselection cannot be paid (5 + 16)
budget_run 13 5 --modules five --optimizer cmaes --budget 12
# an explicit --preselect: its single scores come out of the budget
budget_run 11 2 --modules five --preselect 2 --budget 10
expect_exit 2 "$LORAHUB" adapt --modules five --examples task.jsonl --backend-cmd "$TB" --preselect 2 \
    --budget 5 --report x.json
expect_one_line_error
expect_err_contains "--budget 5 cannot pay for scoring the 5 modules alone and a search"
# retrieval too: 22 modules alone need a budget of 22
budget_run 23 1 --modules many --select best-single --budget 22
expect_exit 2 "$LORAHUB" adapt --modules many --examples task.jsonl --backend-cmd "$TB" \
    --select best-single --budget 21 --report x.json
expect_err_contains "give at least 22"
# the paper preset: 20 drawn, all searched, 40 + 1
budget_run 41 20 --modules many --preset paper

# ---- a resume may raise the budget: the recorded evaluations replay, the rest are new ----
rm -rf rb rb.checkpoint.json
expect_exit 0 "$LORAHUB" adapt --modules five --examples task.jsonl --backend-cmd "$TB" --preselect 0 \
    --method cat --optimizer cobyla --budget 8 -o rb
budget_run 5 5 --modules five --preselect 0 --method cat --optimizer cobyla --budget 12 -o rb --resume
[ "$(num replayed bud.json)" -eq 8 ] && [ "$(num evaluations bud.json)" -eq 12 ] ||
    fail "resume with a larger budget: replayed $(num replayed bud.json), evaluations $(num evaluations bud.json)"
