#!/bin/sh
# tools/table.sh - the results table of the bundled zoo: docs/results.md and
# docs/results.json, measured with the lorahub binary alone (sh, awk, sed and
# xargs around it; no Python). Run by `make table`:
#
#   O=build LORAHUB=build/lorahub sh tools/table.sh
#
# For every unseen task of examples/zoo/tasks (a task with fewshot-1.jsonl)
# and every seed K = 1..SEEDS, each method adapts on fewshot-K.jsonl with
# --seed K (the seed also draws 20 of the zoo's modules) and is scored by
# greedy exact match on the task's test.jsonl (the first TEST_N examples).
#
# Environment (all optional):
#   LORAHUB   the binary (default $O/lorahub)      O       build dir (default build)
#   ZOO       the zoo (default examples/zoo)        OUT     output dir (default docs)
#   SEEDS     seeds per task (default 5)            JOBS    parallel runs (default 2, at most 2)
#   SLOW_SEEDS  seeds for the budget-200 methods (default 3, to keep make table near 30 min)
#   AGGREGATE_ONLY=1  rebuild the outputs from the runs already in WORK (also from an
#             interrupted run: runs go seed by seed, so the first seeds are complete first)
#   TASKS     space-separated task names (default: every unseen task)
#   METHODS   space-separated method names (default: all, see method_args)
#   TEST_N    test examples scored (default 100)
#   WORK      scratch dir (default $O/table), cleared first
set -eu

cd "$(dirname "$0")/.."
: "${O:=build}"
: "${LORAHUB:=$O/lorahub}"
: "${ZOO:=examples/zoo}"
: "${OUT:=docs}"
: "${SEEDS:=5}"
: "${SLOW_SEEDS:=3}"
[ "$SLOW_SEEDS" -le "$SEEDS" ] || SLOW_SEEDS=$SEEDS
: "${JOBS:=2}"
: "${TEST_N:=100}"
: "${WORK:=$O/table}"
# One BLAS thread per process: JOBS processes share the machine's cores.
OPENBLAS_NUM_THREADS=1
export LORAHUB ZOO WORK TEST_N OPENBLAS_NUM_THREADS

# method name -> lorahub adapt options ("eval" = no adapter search at all).
# Every run starts from --preset paper (pick 20, lorahub, cobyla, budget 40,
# bound 1.5, l1 0.05) and changes what it names;
# best-single-all and the preselect methods choose from all modules (--pick 0):
# measuring replaces the random draw.
method_args() {
    case $1 in
    zero-shot|icl-5) echo eval ;;
    best-single)          echo "--select best-single" ;;
    best-single-all)      echo "--pick 0 --select best-single" ;;
    uniform)              echo "--select uniform" ;;
    lorahub-cobyla)       echo "--method lorahub --optimizer cobyla --budget 40" ;;
    lorahub-cmaes)        echo "--method lorahub --optimizer cmaes --budget 40" ;;
    lorahub-nelder-mead)  echo "--method lorahub --optimizer nelder-mead --budget 40" ;;
    lorahub-bobyqa)       echo "--method lorahub --optimizer bobyqa --budget 40" ;;
    cat-cobyla)           echo "--method cat --optimizer cobyla --budget 40" ;;
    lorahub-cobyla-200)   echo "--method lorahub --optimizer cobyla --budget 200" ;;
    pre3-lorahub-cobyla)  echo "--pick 0 --preselect 3 --method lorahub --optimizer cobyla --budget 40" ;;
    pre5-lorahub-cobyla)  echo "--pick 0 --preselect 5 --method lorahub --optimizer cobyla --budget 40" ;;
    pre8-lorahub-cobyla)  echo "--pick 0 --preselect 8 --method lorahub --optimizer cobyla --budget 40" ;;
    pre3-cat-cobyla)      echo "--pick 0 --preselect 3 --method cat --optimizer cobyla --budget 40" ;;
    pre5-cat-cobyla)      echo "--pick 0 --preselect 5 --method cat --optimizer cobyla --budget 40" ;;
    pre8-cat-cobyla)      echo "--pick 0 --preselect 8 --method cat --optimizer cobyla --budget 40" ;;
    pre5-lorahub-cobyla-200) echo "--pick 0 --preselect 5 --method lorahub --optimizer cobyla --budget 200" ;;
    pre5-cat-cobyla-200)  echo "--pick 0 --preselect 5 --method cat --optimizer cobyla --budget 200" ;;
    pre5-lorahub-cmaes)   echo "--pick 0 --preselect 5 --method lorahub --optimizer cmaes --budget 40" ;;
    pre5-cat-cmaes)       echo "--pick 0 --preselect 5 --method cat --optimizer cmaes --budget 40" ;;
    pre5-cat-cmaes-200)   echo "--pick 0 --preselect 5 --method cat --optimizer cmaes --budget 200" ;;
    default-search)       echo "--preset default --budget 40" ;;
    default-search-100)   echo "--preset default --budget 100" ;;
    pre3-cat-cobyla-fromsingle) echo "--pick 0 --preselect 3 --start best-single --method cat --optimizer cobyla --budget 40" ;;
    pre5-cat-cobyla-fromsingle) echo "--pick 0 --preselect 5 --start best-single --method cat --optimizer cobyla --budget 40" ;;
    pre5-lorahub-cobyla-fromsingle) echo "--pick 0 --preselect 5 --start best-single --method lorahub --optimizer cobyla --budget 40" ;;
    pre5-cat-cobyla-fromsingle-200) echo "--pick 0 --preselect 5 --start best-single --method cat --optimizer cobyla --budget 200" ;;
    # --select auto: cross-validation over the 5 examples (leave-one-out) decides between
    # best-single-all and pre3-cat-cobyla; the budget covers the 5 fold runs and the refit, each
    # scoring the 24 modules alone (so auto needs at least 160): 240 gives each 38, i.e. 14
    # search evaluations after the 24 single scores, close to pre3-cat-cobyla's 16 of 40
    auto|auto-240)        echo "--pick 0 --preselect 3 --method cat --optimizer cobyla --budget 240 --select auto" ;;
    # the merging methods and the uniform average over the 3 preselected modules
    # (issue 15; the -svd forms, which take the zoo's mixed ranks; at --density 1, the default,
    # dare-ties is ties and magnitude-prune prunes nothing: TIES keeps the top 20%, DARE half)
    pre3-ties-cobyla)     echo "--pick 0 --preselect 3 --method ties-svd --density 0.2 --optimizer cobyla --budget 40" ;;
    pre3-dare-ties-cobyla) echo "--pick 0 --preselect 3 --method dare-ties-svd --density 0.5 --optimizer cobyla --budget 40" ;;
    pre3-magnitude-prune-cobyla) echo "--pick 0 --preselect 3 --method magnitude-prune-svd --density 0.2 --optimizer cobyla --budget 40" ;;
    pre3-uniform)         echo "--pick 0 --preselect 3 --method cat --select uniform" ;;
    *) echo "tools/table.sh: unknown method '$1'" >&2; return 1 ;;
    esac
}
ALL_METHODS="zero-shot icl-5 best-single best-single-all uniform lorahub-cobyla lorahub-cmaes lorahub-nelder-mead
lorahub-bobyqa cat-cobyla lorahub-cobyla-200 pre3-lorahub-cobyla pre5-lorahub-cobyla
pre8-lorahub-cobyla pre3-cat-cobyla pre5-cat-cobyla pre8-cat-cobyla pre5-lorahub-cobyla-200
pre5-cat-cobyla-200 pre5-lorahub-cmaes pre5-cat-cmaes pre5-cat-cmaes-200 pre3-cat-cobyla-fromsingle
pre5-cat-cobyla-fromsingle pre5-lorahub-cobyla-fromsingle pre5-cat-cobyla-fromsingle-200 auto
default-search default-search-100 pre3-ties-cobyla pre3-dare-ties-cobyla pre3-magnitude-prune-cobyla pre3-uniform"
: "${METHODS:=$ALL_METHODS}"

# A number out of a one-line JSON object or a pretty-printed report.
json_num() { sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p" "$2" | head -n 1; }

# ---- worker: one (task, seed, method) run; prints one TSV result line ----
# task seed method accuracy adapt_seconds prompt_tokens_per_example
if [ "${1:-}" = --job ]; then
    task=$2; seed=$3; m=$4
    T=$ZOO/tasks/$task
    d=$WORK/runs/$task/$seed/$m
    mkdir -p "$d"
    head -n "$TEST_N" "$T/test.jsonl" >"$d/test.jsonl"
    args=$(method_args "$m")
    secs=NA
    set -- --base "$ZOO/base" --examples "$d/test.jsonl" --metric exact-match --json --threads 1
    if [ "$m" = zero-shot ]; then
        :
    elif [ "$m" = icl-5 ]; then
        set -- "$@" --icl 5 --icl-examples "$T/fewshot-$seed.jsonl"
    else
        # shellcheck disable=SC2086 # args is a list of options
        if ! "$LORAHUB" adapt -q --force --task "$task" --base "$ZOO/base" --modules "$ZOO/modules" \
                --examples "$T/fewshot-$seed.jsonl" --seed "$seed" --preset paper $args \
                -o "$d/adapter" --report "$d/report.json" --trace "$d/trace.tsv" \
                >"$d/adapt.log" 2>&1; then
            echo "tools/table.sh: $task seed $seed $m: adapt failed:" >&2
            cat "$d/adapt.log" >&2
            exit 1
        fi
        secs=$(json_num wall_seconds "$d/report.json")
        set -- "$@" --adapter "$d/adapter"
    fi
    if ! "$LORAHUB" eval "$@" >"$d/eval.json" 2>"$d/eval.log"; then
        echo "tools/table.sh: $task seed $seed $m: eval failed:" >&2
        cat "$d/eval.log" >&2
        exit 1
    fi
    acc=$(json_num accuracy "$d/eval.json")
    printf '%s\t%s\t%s\t%s\t%s\n' "$task" "$seed" "$m" "$acc" "$secs" >"$d/result.tsv"
    exit 0
fi

# ---- driver ----
[ -x "$LORAHUB" ] || { echo "tools/table.sh: no lorahub binary at '$LORAHUB' (run make)" >&2; exit 1; }
[ -f "$ZOO/base/config.json" ] ||
    { echo "tools/table.sh: $ZOO/base is missing: the bundled zoo is not built" >&2; exit 1; }
[ "$JOBS" -ge 1 ] && [ "$JOBS" -le 2 ] || { echo "tools/table.sh: JOBS must be 1 or 2" >&2; exit 2; }
if [ -z "${TASKS:-}" ]; then
    TASKS=$(for f in "$ZOO"/tasks/*/fewshot-1.jsonl; do basename "$(dirname "$f")"; done | tr '\n' ' ')
fi
[ -n "$TASKS" ] || { echo "tools/table.sh: no unseen task (tasks/*/fewshot-1.jsonl) in $ZOO" >&2; exit 1; }
for m in $METHODS; do method_args "$m" >/dev/null; done
n_modules=$(find -L "$ZOO/modules" -mindepth 2 -maxdepth 2 -name adapter_config.json | wc -l)

t0=$(date +%s)
if [ "${AGGREGATE_ONLY:-0}" = 1 ]; then
    [ -f "$WORK/tokens.tsv" ] && [ -d "$WORK/runs" ] ||
        { echo "tools/table.sh: no earlier run in $WORK" >&2; exit 1; }
    find "$WORK/runs" -name result.tsv -exec cat {} + | sort >"$WORK/results.tsv"
    if [ -f "$WORK/meta.tsv" ]; then
        elapsed=$(sed -n 's/^elapsed\t//p' "$WORK/meta.tsv")
        load=$(sed -n 's/^load\t//p' "$WORK/meta.tsv")
    else  # interrupted: from the start to the last finished run
        elapsed="$(( $(find "$WORK/runs" -name result.tsv -exec stat -c %Y {} + | sort -n | tail -n 1) -
                     $(stat -c %Y "$WORK/tokens.tsv") )) (interrupted; plus the token counts)"
        load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
    fi
    mkdir -p "$OUT"
else
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"

# Prompt tokens per test example, through lorahub's own tokenizer: an example
# with an empty input and the prompt as its output, scored without EOS, counts
# exactly encode(prompt) tokens (BOS predicts the first one); + 1 for BOS.
# ICL prompts are built as lorahub eval --icl builds them (in1 out1 \n ... in).
jsonl_fields() {  # JSONL {"input": "...", "output": "..."} -> escaped input TAB escaped output
    sed -n 's/^{ *"input": *"\(\([^"\\]\|\\.\)*\)", *"output": *"\(\([^"\\]\|\\.\)*\)" *}$/\1\t\3/p'
}
prompt_tokens() {  # test-file [icl-file] -> mean prompt tokens per example
    tf=$WORK/tok.jsonl
    if [ $# -gt 1 ]; then
        demo=$(jsonl_fields <"$2" | head -n 5 | awk -F '\t' '{ printf "%s%s\\n", $1, $2 }')
    else
        demo=
    fi
    head -n "$TEST_N" "$1" | jsonl_fields |
        DEMO=$demo awk -F '\t' '{ printf "{\"input\": \"\", \"output\": \"%s%s\"}\n", ENVIRON["DEMO"], $1 }' >"$tf"
    n=$(wc -l <"$tf")
    [ "$(head -n "$TEST_N" "$1" | wc -l)" -eq "$n" ] ||
        { echo "tools/table.sh: $1: a line is not {\"input\": ..., \"output\": ...}" >&2; return 1; }
    "$LORAHUB" eval --base "$ZOO/base" --examples "$tf" --no-eos --json --threads 1 >"$WORK/tok.json"
    awk -v t="$(json_num tokens "$WORK/tok.json")" -v n="$n" 'BEGIN { printf "%.1f", t / n + 1 }'
}
: >"$WORK/tokens.tsv"
for task in $TASKS; do
    T=$ZOO/tasks/$task
    tk=$(prompt_tokens "$T/test.jsonl")
    printf '%s\tplain\t%s\n' "$task" "$tk" >>"$WORK/tokens.tsv"
    s=1
    while [ "$s" -le "$SEEDS" ]; do
        tk=$(prompt_tokens "$T/test.jsonl" "$T/fewshot-$s.jsonl")
        printf '%s\ticl-%s\t%s\n' "$task" "$s" "$tk" >>"$WORK/tokens.tsv"
        s=$((s + 1))
    done
done

# The job list seed by seed (an interrupted run still has whole seeds), slow
# methods first within a seed so the two workers finish together.
for task in $TASKS; do
    for m in $METHODS; do
        s=1
        while [ "$s" -le "$SEEDS" ]; do
            case $m in
            zero-shot) [ "$s" -eq 1 ] && echo "$task 1 $m" ;;  # the same run for every seed
            *-200) [ "$s" -le "$SLOW_SEEDS" ] && echo "$task $s $m" ;;
            *) echo "$task $s $m" ;;
            esac
            s=$((s + 1))
        done
    done
done | awk '{ print $2, ($3 ~ /200/ ? 0 : 1), $0 }' | sort -k1,1n -k2,2n -s | cut -d' ' -f3- >"$WORK/jobs"
echo "tools/table.sh: $(wc -l <"$WORK/jobs") runs ($(echo $TASKS | wc -w) tasks, $SEEDS seeds," \
     "$(echo $METHODS | wc -w) methods), $JOBS at a time"
xargs -P "$JOBS" -L 1 sh "$0" --job <"$WORK/jobs"
find "$WORK/runs" -name result.tsv -exec cat {} + | sort >"$WORK/results.tsv"
t1=$(date +%s)
elapsed=$((t1 - t0))
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
printf 'elapsed\t%s\nload\t%s\n' "$elapsed" "$load" >"$WORK/meta.tsv"
fi

# ---- aggregate: mean and sample std over seeds, per task and method ----
kind_of() {  # the task's kind from the zoo's unseen.tsv (older zoos: its README's table)
    k=$(awk -F '\t' -v t="$1" '$1 == t { print $2 }' "$ZOO/unseen.tsv" 2>/dev/null || true)
    [ -n "$k" ] || k=$(sed -n "s/^| $1 | \([a-z]*\) |.*/\1/p" "$ZOO/README.md" 2>/dev/null | head -n 1)
    echo "${k:-other}"
}
: >"$WORK/kinds.tsv"
for task in $TASKS; do printf '%s\t%s\n' "$task" "$(kind_of "$task")" >>"$WORK/kinds.tsv"; done

# The T5 zoo's column group (docs/results-t5.json, written by make table-t5):
# each method's mean over the T5 tasks, beside the LLaMA zoo's categories.
: "${T5_JSON:=$OUT/results-t5.json}"
: >"$WORK/t5.tsv"
if [ -f "$T5_JSON" ]; then  # make table-t5 writes into its own OUT: no T5 column there
    awk '/"task":/ {
        nt++; line = $0
        while (match(line, /"[^"]+": [0-9.]+/)) {
            pair = substr(line, RSTART, RLENGTH); line = substr(line, RSTART + RLENGTH)
            split(pair, kv, /": /); m = substr(kv[1], 2); s[m] += kv[2]; c[m]++
        }
    }
    END { for (m in s) printf "%s\t%.1f\t%d\n", m, 100 * s[m] / c[m], c[m] }' "$T5_JSON" >"$WORK/t5.tsv"
fi

awk -F '\t' -v methods="$METHODS" -v tasks="$TASKS" -v seeds="$SEEDS" \
    -v json="$WORK/results.json" -v md="$WORK/table.md" \
    -v kinds="$WORK/kinds.tsv" -v toks="$WORK/tokens.tsv" -v t5="$WORK/t5.tsv" '
FILENAME == kinds { kind[$1] = $2; next }
FILENAME == t5 { t5mean[$1] = $2; if ($3 > t5n) t5n = $3; next }
FILENAME == toks {
    if ($2 == "plain") plain[$1] = $3; else { icl[$1] += $3; nicl[$1]++ }
    next
}
{
    k = $1 SUBSEP $3
    n[k]++; s[k] += $4; ss[k] += $4 * $4
    if ($5 != "NA") { sec[k] += $5; nsec[k]++ }
}
function mean(k) { return n[k] ? s[k] / n[k] : -1 }
function sd(k,   v) {
    if (n[k] < 2) return 0
    v = (ss[k] - s[k] * s[k] / n[k]) / (n[k] - 1)
    return v > 0 ? sqrt(v) : 0
}
function num(x, have) { return have ? sprintf("%.4f", x) : "null" }
function tok(t, m) { return m == "icl-5" ? icl[t] / nicl[t] : plain[t] }
END {
    nm = split(methods, M, " "); nt = split(tasks, T, " ")
    # JSON: one object per task
    printf "{\n  \"seeds\": %d,\n  \"metric\": \"greedy exact match on the test file\",\n", seeds >json
    printf "  \"tasks\": [\n" >json
    for (i = 1; i <= nt; i++) {
        t = T[i]
        printf "    {\"task\": \"%s\", \"kind\": \"%s\"", t, kind[t] >json
        for (j = 1; j <= nm; j++) printf ", \"%s\": %s", M[j], num(mean(t SUBSEP M[j]), n[t SUBSEP M[j]]) >json
        printf ",\n     \"std\": {" >json
        for (j = 1; j <= nm; j++) printf "%s\"%s\": %s", (j > 1 ? ", " : ""), M[j], num(sd(t SUBSEP M[j]), n[t SUBSEP M[j]]) >json
        printf "},\n     \"seconds\": {" >json
        for (j = 1; j <= nm; j++) {
            k = t SUBSEP M[j]
            printf "%s\"%s\": %s", (j > 1 ? ", " : ""), M[j], (nsec[k] ? sprintf("%.3f", sec[k] / nsec[k]) : "null") >json
        }
        printf "},\n     \"tokens\": {" >json
        for (j = 1; j <= nm; j++) printf "%s\"%s\": %.1f", (j > 1 ? ", " : ""), M[j], tok(t, M[j]) >json
        printf "},\n     \"runs\": {" >json
        for (j = 1; j <= nm; j++) printf "%s\"%s\": %d", (j > 1 ? ", " : ""), M[j], n[t SUBSEP M[j]] >json
        printf "}}%s\n", (i < nt ? "," : "") >json
    }
    printf "  ]\n}\n" >json
    # Markdown: methods down. First the means per task category (the kinds in
    # the order below, then any other) and over all tasks, prompt tokens per
    # test example and seconds per adapt run; then every task, grouped by
    # category, each group followed by its mean.
    nk = split("reworded blend mixture format between length control", K, " ")
    for (i = 1; i <= nt; i++) {
        known = 0
        for (c = 1; c <= nk; c++) if (kind[T[i]] == K[c]) known = 1
        if (!known && !(kind[T[i]] in extra)) { extra[kind[T[i]]] = 1; K[++nk] = kind[T[i]] }
    }
    ng = 0; no = 0
    for (c = 1; c <= nk; c++) {
        cnt = 0
        for (i = 1; i <= nt; i++) if (kind[T[i]] == K[c]) { O[++no] = T[i]; G[no] = c; cnt++ }
        if (cnt) { GK[++ng] = c; GN[c] = cnt }
    }
    for (j = 1; j <= nm; j++) {
        m = M[j]; tot = 0; nd = 0; ttok = 0; tsec = 0; ns = 0; rmin = -1; rmax = 0
        for (i = 1; i <= nt; i++) {
            k = T[i] SUBSEP m
            ttok += tok(T[i], m)
            if (!n[k]) { rmin = 0; continue }
            tot += mean(k); nd++
            cs[m, kind[T[i]]] += mean(k); cn[m, kind[T[i]]]++
            if (nsec[k]) { tsec += sec[k] / nsec[k]; ns++ }
            if (rmin < 0 || n[k] < rmin) rmin = n[k]
            if (n[k] > rmax) rmax = n[k]
        }
        allmean[m] = nd ? sprintf("%.1f", 100 * tot / nd) : "—"
        tail[m] = sprintf(" %.0f | %s | %s |", ttok / nt, (ns ? sprintf("%.1f", tsec / ns) : "—"),
                          (rmin == rmax ? rmin : rmin "–" rmax))
    }
    printf "| method |" >md
    for (g = 1; g <= ng; g++) printf " %s (%d) |", label(K[GK[g]]), GN[GK[g]] >md
    printf " **mean** |%s tokens/ex | s/run | runs |\n|---|", (t5n ? sprintf(" T5 zoo (%d) |", t5n) : "") >md
    for (g = 1; g <= ng; g++) printf "---|" >md
    printf "---|%s---|---|---|\n", (t5n ? "---|" : "") >md
    for (j = 1; j <= nm; j++) {
        m = M[j]
        printf "| %s |", m >md
        for (g = 1; g <= ng; g++) printf " %s |", cmean(m, K[GK[g]]) >md
        printf " **%s** |", allmean[m] >md
        if (t5n) printf " %s |", (m in t5mean ? t5mean[m] : "—") >md
        printf "%s\n", tail[m] >md
    }
    printf "\n| method |" >md
    for (i = 1; i <= no; i++) {
        printf " %s |", O[i] >md
        if (i == no || G[i + 1] != G[i]) printf " *%s* |", label(K[G[i]]) >md
    }
    printf "\n|---|" >md
    for (i = 1; i <= no; i++) { printf "---|" >md; if (i == no || G[i + 1] != G[i]) printf "---|" >md }
    printf "\n" >md
    for (j = 1; j <= nm; j++) {
        m = M[j]
        printf "| %s |", m >md
        for (i = 1; i <= no; i++) {
            k = O[i] SUBSEP m
            if (!n[k]) printf " — |" >md
            else printf " %.0f ± %.0f |", 100 * mean(k), 100 * sd(k) >md
            if (i == no || G[i + 1] != G[i]) printf " *%s* |", cmean(m, K[G[i]]) >md
        }
        printf "\n" >md
    }
}
function label(k) { return k == "format" ? "format+content" : k }
function cmean(m, k) { return cn[m, k] ? sprintf("%.1f", 100 * cs[m, k] / cn[m, k]) : "—" }
' "$WORK/kinds.tsv" "$WORK/tokens.tsv" "$WORK/t5.tsv" "$WORK/results.tsv"

# docs/results.md: the generated part sits between two marker lines and is
# replaced; the write-up around it is kept.
{
    echo "<!-- generated by tools/table.sh (make table): edit outside these markers -->"
    echo
    echo "Greedy exact match on the first $TEST_N test examples, in percent, mean ± sample std over"
    echo "$SEEDS seeds ($SLOW_SEEDS for the budget-200 runs; seed K: fewshot-K.jsonl and --seed K, which draws"
    echo "20 of the zoo's $n_modules modules; best-single-all and the pre* methods choose from all $n_modules); zero-shot does"
    echo "not depend on the seed and runs once."
    echo "tokens/ex: prompt tokens per test example (BOS + input; ICL adds 5 demonstrations)."
    echo "s/run: wall seconds per lorahub adapt run (mean; from its report). runs: seeds per task."
    echo "The first table gives the mean per task category (number of tasks in brackets; categories:"
    echo "$ZOO/unseen.tsv) and over all tasks; the second every task, each category followed by its mean."
    if [ -s "$WORK/t5.tsv" ]; then
        echo "T5 zoo: the mean over the tasks of examples/zoo-t5 (from $T5_JSON, written by make table-t5;"
        echo "— where that table has no such row)."
    fi
    echo "$(wc -l <"$WORK/results.tsv") runs, $JOBS at a time, in $elapsed s on $(nproc 2>/dev/null || echo '?') cores,"
    echo "load average at the end $load; $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    cat "$WORK/table.md"
    echo
    echo "<!-- end of generated part -->"
} >"$WORK/generated.md"
if [ -f "$OUT/results.md" ] && grep -q '^<!-- generated by tools/table.sh' "$OUT/results.md" &&
        grep -q '^<!-- end of generated part -->' "$OUT/results.md"; then
    awk -v gen="$WORK/generated.md" '
        /^<!-- generated by tools\/table.sh/ { while ((getline l < gen) > 0) print l; skip = 1; next }
        /^<!-- end of generated part -->/ { skip = 0; next }
        !skip' "$OUT/results.md" >"$WORK/results.md"
else
    { echo "# Results on the bundled zoo"; echo; cat "$WORK/generated.md"; echo
      echo "Rebuild with \`make table\` (tools/table.sh)."; } >"$WORK/results.md"
fi
mv "$WORK/results.md" "$OUT/results.md"; mv "$WORK/results.json" "$OUT/results.json"
echo "tools/table.sh: $(wc -l <"$WORK/results.tsv") runs in ${elapsed} s (load average $load)"
echo "tools/table.sh: wrote $OUT/results.json and $OUT/results.md"
