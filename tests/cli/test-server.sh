# --backend server against real llama-server processes on 127.0.0.1.
#
# Skipped (exit 0 after one check that needs no server) when llama.cpp is
# not built: make check prints its one skip line for the llamacpp tests, and
# under CI (LORAHUB_REQUIRE_LLAMACPP) a missing llama-server fails. With it:
#  - serve-cmd converts the zoo's PEFT modules to GGUF once and prints the
#    command that loads them in lorahub's order at scale 0;
#  - the servers' losses equal the llamacpp backend's within 1e-3 (base
#    model, a module alone, an adapt search with --method cat);
#  - a server holding the modules in another order is refused, naming it;
#  - the same seed gives the same trace on one server and on two;
#  - a server killed mid-run, one answering garbage and one that stalls are
#    dropped with a warning and the run ends with the same trace; with no
#    server left the run fails, saying so;
#  - other methods than cat are refused, saying they need merged files.
# Every process started here is stopped by pid at the end.
. "$TOP/tests/cli/lib.sh"
ZOO="$TOP/examples/zoo"
GGUF="$ZOO/base.gguf"
FAKE="$TOP/$O/tests/tools/fake_server"
SERVER_BIN="${LLAMA_BINDIR:-}/llama-server"
export OPENBLAS_NUM_THREADS=1
cd "$TMP"

# A server that is not there: one line naming it, whatever is built.
port=$("$FAKE" port)
expect_exit 1 "$LORAHUB" eval --server "127.0.0.1:$port" --examples "$ZOO/tasks/add2/fewshot.jsonl"
expect_one_line_error
expect_err_contains "server http://127.0.0.1:$port/lora-adapters"

if [ ! -x "$SERVER_BIN" ]; then
    [ -z "${LORAHUB_REQUIRE_LLAMACPP:-}" ] || fail "no llama-server in '${LLAMA_BINDIR:-}'"
    exit 0
fi

pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# start NAME PORT ARGS...: llama-server in the background, ready within 60 s.
start() {
    name=$1 p=$2; shift 2
    "$SERVER_BIN" "$@" --host 127.0.0.1 --port "$p" -t 1 -c 1024 --no-webui \
        >"$name.log" 2>&1 &
    eval "pid_$name=$!"
    pids="$pids $!"
    i=0
    until grep -q "listening on" "$name.log" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 600 ] || { tail -5 "$name.log" >&2; fail "llama-server $name did not start"; }
        kill -0 "$(eval echo \$pid_$name)" 2>/dev/null || { tail -5 "$name.log" >&2; fail "llama-server $name exited"; }
        sleep 0.1
    done
}

# ---- serve-cmd: modules in lorahub's order, converted once ----
m1="$ZOO/modules/add1" m2="$ZOO/modules/add3" m3="$ZOO/modules/sub1" m4="$ZOO/modules/reverse"
printf '%s\n' "$m1" "$m2" "$m3" "$m4" >mods.txt
expect_exit 0 "$LORAHUB" serve-cmd --modules mods.txt --base-gguf "$GGUF" --gguf-dir gguf --port 1
cp out cmd1
grep -q -- "--lora-scaled $TMP/gguf/add1.gguf:0 --lora-scaled $TMP/gguf/add3.gguf:0 --lora-scaled $TMP/gguf/sub1.gguf:0 --lora-scaled $TMP/gguf/reverse.gguf:0 " cmd1 ||
    fail "serve-cmd: $(cat cmd1)"
before=$(ls -l --time-style=+%s.%N gguf)
expect_exit 0 "$LORAHUB" serve-cmd --modules mods.txt --base-gguf "$GGUF" --gguf-dir gguf --port 1
[ "$(ls -l --time-style=+%s.%N gguf)" = "$before" ] || fail "serve-cmd converted the modules again"
expect_exit 2 "$LORAHUB" serve-cmd --modules mods.txt --base-gguf "$GGUF"
expect_err_contains "give --gguf-dir DIR"
# the arguments after the program name, for the servers below
args=$(sed 's/^[^ ]* //; s/ --port 1 / /' cmd1)

P1=$("$FAKE" port); start s1 "$P1" $args
P2=$("$FAKE" port); start s2 "$P2" $args
# the same modules in another order
P3=$("$FAKE" port); start s3 "$P3" -m "$GGUF" -np 1 -fa off -ctk f32 -ctv f32 \
    --lora-scaled "gguf/add1.gguf:0" --lora-scaled "gguf/sub1.gguf:0" \
    --lora-scaled "gguf/add3.gguf:0" --lora-scaled "gguf/reverse.gguf:0"
S1="http://127.0.0.1:$P1" S2="http://127.0.0.1:$P2" S3="http://127.0.0.1:$P3"

ex="$ZOO/tasks/add2/fewshot.jsonl"
expect_exit 1 "$LORAHUB" eval --server "$S1" --server "$S3" --examples "$ex"
expect_one_line_error
expect_err_contains "server $S3 holds adapter 1 'sub1' where $S1 holds 'add3'"
kill "$pid_s3"

# ---- losses against the llamacpp backend ----
jloss() { sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' "$TMP/out"; }
# relative, with a 1e-5-nat floor for losses near 0
close() { near "$1" "$2" 1e-5 "$3" || fail "$4: server $1, llamacpp $2 (relative tolerance $3)"; }
# unseen tasks: the zoo base answers its own tasks at a loss near 0
for task in add2 reverse_reworded; do
    e="$ZOO/tasks/$task/fewshot.jsonl"
    expect_exit 0 "$LORAHUB" eval --server "$S1" --server "$S2" --examples "$e" --json
    s=$(jloss); st=$(sed -n 's/.*"tokens":\([0-9]*\).*/\1/p' out)
    if [ "${LORAHUB_LLAMACPP:-}" = yes ]; then
        expect_exit 0 "$LORAHUB" eval --backend llamacpp --base-gguf "$GGUF" --threads 1 --examples "$e" --json
        lt=$(sed -n 's/.*"tokens":\([0-9]*\).*/\1/p' out)
        [ "$st" = "$lt" ] || fail "$task: the servers score $st tokens, llamacpp $lt"
        close "$s" "$(jloss)" 1e-3 "$task base model"
        expect_exit 0 "$LORAHUB" eval --server "$S1" --examples "$e" --json --adapter "$m4"
        s=$(jloss)
        expect_exit 0 "$LORAHUB" eval --backend llamacpp --base-gguf "$GGUF" --threads 1 --examples "$e" --json --adapter "$m4"
        close "$s" "$(jloss)" 1e-3 "$task with module reverse"
    fi
done

# ---- adapt: one server, two servers, llamacpp ----
# same_trace A B WHAT: the traces without their last column (milliseconds)
same_trace() {
    awk -F '\t' -v OFS='\t' '{ $NF = ""; print }' "$1" >"$1.cut"
    awk -F '\t' -v OFS='\t' '{ $NF = ""; print }' "$2" >"$2.cut"
    cmp -s "$1.cut" "$2.cut" || fail "$3: $(diff "$1.cut" "$2.cut" | head -4)"
}
search() { # OUT SERVER-ARGS...
    o=$1; shift
    expect_exit 0 "$LORAHUB" adapt -q "$@" --modules mods.txt --examples "$ex" --method cat \
        --select search --preselect 0 --optimizer cmaes --budget 24 --seed 7 --trace "$o.tsv" -o "$o"
}
search one --server "$S1"
search two --server "$S1" --server "$S2"
same_trace one.tsv two.tsv "one server and two give different traces"
[ "$(wc -l <one.tsv)" -gt 20 ] || fail "the trace has $(wc -l <one.tsv) lines"
if [ "${LORAHUB_LLAMACPP:-}" = yes ]; then
    search llama --backend llamacpp --base-gguf "$GGUF" --threads 1
    paste one.tsv llama.tsv | awk -F '\t' -v nf="$(head -1 one.tsv | awk -F '\t' '{print NF}')" '
        NR > 1 { s = $2; l = $(nf + 2); d = s - l; if (d < 0) d = -d;
                 if (!(d <= 1e-3 * l)) { print "row " NR - 1 ": server " s ", llamacpp " l; bad = 1 } }
        END { exit bad }' >diff.txt || fail "adapt losses differ: $(cat diff.txt)"
fi

# ---- other methods need a merged file per candidate ----
expect_exit 1 "$LORAHUB" adapt -q --server "$S1" --modules mods.txt --examples "$ex" \
    --method lorahub --budget 2 -o merged
expect_err_contains "need a merged file per candidate"

# ---- an example longer than a server's context: refused at once, no server dropped ----
awk 'BEGIN { s = ""; for (i = 0; i < 1500; i++) s = s "a "; printf "{\"input\": \"%s\", \"output\": \"b\"}\n", s }' >long.jsonl
expect_exit 1 "$LORAHUB" eval --server "$S1" --server "$S2" --examples long.jsonl
expect_one_line_error
expect_err_contains "HTTP status 400"

# ---- a server that answers garbage, one that stalls ----
"$FAKE" garbage "$P1" >fake1.port & pids="$pids $!"
"$FAKE" stall "$P1" >fake2.port & pids="$pids $!"
sleep 0.2
F1="http://127.0.0.1:$(cat fake1.port)" F2="http://127.0.0.1:$(cat fake2.port)"
search garbage --server "$F1" --server "$S1"
same_trace one.tsv garbage.tsv "a garbage server changed the trace"
expect_err_contains "warning: dropping server $F1 after 3 failures in a row"
search stall --server "$S1" --server "$F2" --backend-timeout 1
same_trace one.tsv stall.tsv "a stalled server changed the trace"
expect_err_contains "warning: dropping server $F2 after 3 failures in a row"
expect_err_contains "timed out"
expect_exit 1 "$LORAHUB" adapt -q --server "$F1" --modules mods.txt --examples "$ex" --method cat \
    --budget 2 -o none
expect_err_contains "no server left"

# ---- a server killed mid-run ----
# killed once it has answered 10 requests of the run (its log counts them)
served() { grep -c "stop processing" s2.log || true; }
n0=$(served)
# (SIGTERM: llama-server may stop answering before it closes its
# connections, so the request in flight ends by the timeout)
search killed --server "$S1" --server "$S2" --backend-timeout 3 &
run=$!
pids="$pids $run"
i=0
until [ "$(served)" -ge $((n0 + 10)) ]; do
    i=$((i + 1)); [ $i -le 600 ] || fail "server 2 answered no requests of the run"; sleep 0.02
done
kill "$pid_s2"
wait "$run" || fail "the run failed once a server was killed: $(cat err)"
expect_err_contains "warning: dropping server $S2"
same_trace one.tsv killed.tsv "killing a server changed the trace"
