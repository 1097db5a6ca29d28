# --backend llamacpp against the native backend on the bundled zoo.
#
# Built without llama.cpp (LORAHUB_LLAMACPP != yes): the backend answers in
# one line how to get it, and nothing else runs (make check prints the skip
# line; under CI it fails instead). Built with it:
#  - eval losses through llama.cpp (the zoo base as an F16 GGUF,
#    examples/zoo/base.gguf) equal the native backend's on the same
#    safetensors within 1e-3 relative: w = 0 on several tasks, every zoo
#    module alone (each written to GGUF by the backend: a wrong q/k row
#    permutation or GQA shape shows here), and a 3-module cat;
#  - greedy generation (exact match) gives native's outputs on three tasks;
#  - adapt's losses (single-module preselection and the search's records)
#    through both backends agree within 1e-3, with --method cat applied by
#    runtime scales in llama.cpp and merged in native;
#  - llama.cpp's own llama-perplexity, with a zoo module exported to GGUF by
#    lorahub convert as --lora, gives the perplexity that the native
#    backend's loss on the same tokens implies, with and without the module.
. "$TOP/tests/cli/lib.sh"
ZOO="$TOP/examples/zoo"
GGUF="$ZOO/base.gguf"
export OPENBLAS_NUM_THREADS=1
cd "$TMP"

if [ "${LORAHUB_LLAMACPP:-}" != yes ]; then
    expect_exit 1 "$LORAHUB" eval --backend llamacpp --base-gguf "$GGUF" \
        --examples "$ZOO/tasks/add2/fewshot.jsonl"
    expect_one_line_error
    expect_err_contains "tools/install-llamacpp.sh"
    expect_err_contains "LLAMA_PREFIX="
    exit 0
fi

[ -f "$GGUF" ] || fail "$GGUF is missing (tools/zoo_gguf.py writes it)"
jloss() { sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' "$TMP/out"; }
# close A B RTOL WHAT: relative, with a floor of 1e-5 nats for losses near 0 (the zoo base
# answers its own tasks under their canonical instruction at a loss of about 1e-4)
close() { near "$1" "$2" 1e-5 "$3" || fail "$4: llamacpp $1, native $2 (relative tolerance $3)"; }
native() { expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --threads 1 --json "$@"; jloss; }
llama() { expect_exit 0 "$LORAHUB" eval --backend llamacpp --base-gguf "$GGUF" --threads 1 --json "$@"; jloss; }

# ---- w = 0 on several tasks (unseen ones: the base knows the upstream tasks), token counts equal ----
for task in add2 caesar2 reverse_reworded mix_antonym_plural; do
    ex="$ZOO/tasks/$task/fewshot.jsonl"
    n=$(native --examples "$ex"); nt=$(sed -n 's/.*"tokens":\([0-9]*\).*/\1/p' out)
    l=$(llama --examples "$ex"); lt=$(sed -n 's/.*"tokens":\([0-9]*\).*/\1/p' out)
    [ "$nt" = "$lt" ] || fail "$task: llamacpp scores $lt tokens, native $nt (tokenizers differ)"
    close "$l" "$n" 1e-3 "$task base model"
done

# ---- every zoo module alone (written to GGUF by the backend) ----
ex="$ZOO/tasks/add2/fewshot.jsonl"
base=$(native --examples "$ex")
for m in "$ZOO"/modules/*; do
    name=$(basename "$m")
    n=$(native --examples "$ex" --adapter "$m")
    l=$(llama --examples "$ex" --adapter "$m")
    close "$l" "$n" 1e-3 "module $name"
    # the module's effect, not only the loss, is the same
    awk -v l="$l" -v n="$n" -v b="$base" 'BEGIN { d = (l - b) - (n - b); if (d < 0) d = -d;
        e = n - b; if (e < 0) e = -e; exit !(d <= 0.02 * e + 1e-3 * b) }' ||
        fail "module $name moves the loss by $(awk -v l="$l" -v b="$base" 'BEGIN{print l-b}') in llamacpp, $(awk -v n="$n" -v b="$base" 'BEGIN{print n-b}') in native"
done

# ---- greedy generation: the same outputs (exact match) as native ----
for m in add1 reverse uppercase; do
    ex_m="$ZOO/tasks/$m/fewshot.jsonl"
    expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter "$ZOO/modules/$m" --examples "$ex_m" \
        --metric exact-match --threads 1 -v
    grep 'example [0-9]*:' err >native.gen
    expect_exit 0 "$LORAHUB" eval --base-gguf "$GGUF" --adapter "$ZOO/modules/$m" --examples "$ex_m" \
        --metric exact-match --threads 1 -v
    grep 'example [0-9]*:' err >llama.gen
    [ "$(wc -l <native.gen)" -eq 5 ] || fail "$m: no per-example lines: $(cat err)"
    cmp -s native.gen llama.gen || fail "$m: greedy outputs differ: $(diff native.gen llama.gen)"
done

# ---- a 3-module cat, merged into one adapter ----
m1="$ZOO/modules/add1" m2="$ZOO/modules/add3" m3="$ZOO/modules/sub1"
expect_exit 0 "$LORAHUB" compose -m cat -w 0.6,0.5,-0.3 -o cat3 "$m1" "$m2" "$m3"
close "$(llama --examples "$ex" --adapter cat3)" "$(native --examples "$ex" --adapter cat3)" 1e-3 "3-module cat"

# ---- adapt: preselection and search losses, cat by runtime scales ----
expect_exit 0 "$LORAHUB" adapt -q --base "$ZOO/base" --modules "$m1,$m2,$m3" --examples "$ex" \
    --method cat --select search --preselect 0 --budget 6 --optimizer cobyla --threads 1 \
    --trace native.tsv -o native-out
expect_exit 0 "$LORAHUB" adapt -q --backend llamacpp --base-gguf "$GGUF" --modules "$m1,$m2,$m3" \
    --examples "$ex" --method cat --select search --preselect 0 --budget 6 --optimizer cobyla \
    --threads 1 --trace llama.tsv -o llama-out
# the same points are visited while the losses agree; compare the loss column row by row
paste native.tsv llama.tsv | awk -F '\t' -v nf="$(head -1 native.tsv | awk -F '\t' '{print NF}')" '
    NR > 1 { n = $2; l = $(nf + 2); d = n - l; if (d < 0) d = -d;
             if (!(d <= 1e-3 * n)) { print "row " NR - 1 ": native " n ", llamacpp " l; bad = 1 } }
    END { exit bad }' >diff.txt || fail "adapt losses differ: $(cat diff.txt)"

# ---- llama.cpp's own llama-perplexity with --lora, against native ----
# llama-perplexity -c 64 --chunks 1 scores tokens 33..63 of [BOS] t1 t2 ...
# from all the tokens before them. Text of single letters " x" (one token
# each in the zoo's vocabulary) makes the same tokens a native example:
# input = the first 32 letters, output = the next 31 (--no-eos).
PPL="${LLAMA_BINDIR:-}/llama-perplexity"
if [ -x "$PPL" ]; then
    awk 'BEGIN { s = ""; for (i = 0; i < 160; i++) s = s (i ? " " : "") substr("etaoinshrdlucmfwypvbgkqjxz", (i * 7 + int(i * i / 3)) % 26 + 1, 1); print s }' >text.txt
    awk '{ in_ = ""; out = ""; for (i = 1; i <= 63; i++) if (i <= 32) in_ = in_ (i > 1 ? " " : "") $i; else out = out " " $i;
           printf "{\"input\": \"%s\", \"output\": \"%s\"}\n", in_, out }' text.txt >ppl.jsonl
    expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --examples ppl.jsonl --no-eos --json
    [ "$(sed -n 's/.*"tokens":\([0-9]*\).*/\1/p' out)" = 31 ] || fail "ppl.jsonl scores $(cat out), want 31 tokens"
    # llama.cpp's log is written by a thread that exit does not wait for, so
    # the last lines (the estimate) are sometimes lost: run until it shows.
    ppl_loss() {
        i=0
        while [ $i -lt 30 ]; do
            "$PPL" -m "$GGUF" -f text.txt -c 64 -b 64 --chunks 1 -fa off -ctk f32 -ctv f32 -t 1 "$@" \
                >ppl.log 2>&1 || { tail -5 ppl.log >&2; fail "llama-perplexity $* failed"; }
            grep -q 'Final estimate: PPL = ' ppl.log && break
            i=$((i + 1))
        done
        sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' ppl.log | awk '{ printf "%.9g\n", log($1) }'
    }
    m="$ZOO/modules/reverse"
    expect_exit 0 "$LORAHUB" convert "$m" reverse.gguf --base "$ZOO/base"
    pb=$(ppl_loss); pm=$(ppl_loss --lora reverse.gguf)
    nb=$(native --examples ppl.jsonl --no-eos); nm=$(native --examples ppl.jsonl --no-eos --adapter "$m")
    close "$pb" "$nb" 1e-3 "llama-perplexity, base"
    close "$pm" "$nm" 1e-3 "llama-perplexity --lora $(basename "$m")"
    awk -v a="$pm" -v b="$pb" -v c="$nm" -v d="$nb" 'BEGIN { x = (a - b) - (c - d); if (x < 0) x = -x;
        y = c - d; if (y < 0) y = -y; exit !(y > 1e-2 && x <= 0.02 * y) }' ||
        fail "the module moves llama-perplexity's loss by $pb -> $pm, native's by $nb -> $nm"
elif [ -n "${LORAHUB_REQUIRE_LLAMACPP:-}" ]; then
    fail "no llama-perplexity in '${LLAMA_BINDIR:-}'"
fi
