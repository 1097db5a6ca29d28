#!/bin/sh
# bench/llamacpp.sh - scoring throughput: the native backend, the llamacpp
# backend, and llama.cpp's own llama-perplexity, on the same random
# 100M-parameter LLaMA (bench/forward.c's shape: 768 x 12, GQA 12/4, ffn
# 2048, vocab 32000) and the same token count (8 sequences of 512 tokens,
# about half of them scored), one thread each, in one run.
#
# The limit is llama-perplexity itself: the llamacpp backend's goal is at
# least 0.9 of its tokens/s (what it loses is our overhead), the native
# backend's 1.2x llama.cpp's F32. Models (F32, F16, Q8_0 GGUF) come from
# tools/bench_gguf.py (Python with numpy and the llama.cpp source's gguf-py)
# into $O/bench-llamacpp, once. Times are the best of REPEAT runs of the
# scoring alone (lorahub eval -v's "evaluated in", llama-perplexity's
# "prompt eval time"), so loading is left out of both.
# Environment: O, LORAHUB, LLAMA_BINDIR (make bench sets them), REPEAT (3).
set -eu
O=${O:-build}
LORAHUB=${LORAHUB:-$O/lorahub}
REPEAT=${REPEAT:-3}
PPL="${LLAMA_BINDIR:-}/llama-perplexity"
D=$O/bench-llamacpp
if [ ! -x "$PPL" ]; then
    echo "llamacpp: skipped (built without llama.cpp: sh tools/install-llamacpp.sh, then make LLAMA_PREFIX=build/llamacpp bench)"
    exit 0
fi
if [ ! -f "$D/q8_0.gguf" ]; then
    echo "llamacpp: writing the random model and its GGUF files into $D (once, about a minute)"
    /usr/bin/python3 tools/bench_gguf.py "$D"
fi
TOKENS=4096 # 8 x 512, in both
export OPENBLAS_NUM_THREADS=1

# best_of CMD...: the smallest "evaluated in S s" of REPEAT runs of lorahub eval -v
best_eval() {
    best=""
    i=0
    while [ $i -lt "$REPEAT" ]; do
        "$@" --examples "$D/examples.jsonl" --no-eos --threads 1 -v >"$D/out" 2>"$D/err" ||
            { cat "$D/err" >&2; exit 1; }
        s=$(sed -n 's/.*evaluated in \([0-9.]*\) s.*/\1/p' "$D/err")
        rss=$(sed -n 's/.*peak memory (maxrss) \([0-9.]*\) MiB.*/\1/p' "$D/err")
        best=$(awk -v a="$best" -v b="$s" 'BEGIN { print (a == "" || b < a) ? b : a }')
        i=$((i + 1))
    done
    echo "$best $rss"
}
best_ppl() {
    best=""
    i=0
    while [ $i -lt "$REPEAT" ]; do
        "$PPL" -m "$1" -f "$D/text.txt" -c 512 -b 512 --chunks 8 -fa off -ctk f32 -ctv f32 -t 1 \
            >"$D/ppl.log" 2>&1 || { tail -5 "$D/ppl.log" >&2; exit 1; }
        ms=$(sed -n 's/.*prompt eval time = *\([0-9.]*\) ms.*/\1/p' "$D/ppl.log" | head -1)
        best=$(awk -v a="$best" -v b="$ms" 'BEGIN { b /= 1000; print (a == "" || b < a) ? b : a }')
        i=$((i + 1))
    done
    echo "$best"
}
tps() { awk -v t="$TOKENS" -v s="$1" 'BEGIN { printf "%.0f", t / s }'; }

set -- $(best_eval "$LORAHUB" eval --base "$D/hf"); native_s=$1 native_rss=$2
printf '%-34s %8s tokens/s  %7s MiB\n' "native (F32, OpenBLAS)" "$(tps "$native_s")" "$native_rss"
for t in f32 f16 q8_0; do
    set -- $(best_eval "$LORAHUB" eval --backend llamacpp --base-gguf "$D/$t.gguf"); b_s=$1 b_rss=$2
    p_s=$(best_ppl "$D/$t.gguf")
    printf '%-34s %8s tokens/s  %7s MiB\n' "llamacpp backend ($t)" "$(tps "$b_s")" "$b_rss"
    printf '%-34s %8s tokens/s\n' "llama-perplexity ($t)" "$(tps "$p_s")"
    awk -v b="$b_s" -v p="$p_s" -v t="$t" 'BEGIN { printf "  llamacpp backend / llama-perplexity (%s): %.2f (goal >= 0.90)\n", t, p / b }'
    [ "$t" = f32 ] && awk -v n="$native_s" -v b="$b_s" -v p="$p_s" 'BEGIN {
        printf "  native / llama.cpp F32: %.2f against the backend, %.2f against llama-perplexity (goal >= 1.2)\n", b / n, p / n }'
done
rm -f "$D/out" "$D/err" "$D/ppl.log"
