#!/bin/sh
# examples/demo.sh - `make demo`: adapt to one unseen task of the bundled zoo
# with lorahub adapt's default settings, then compare the base model and the
# merged adapter on the task's test set. Outputs go to ./demo-out/ (replaced).
#
#   LORAHUB=build/lorahub sh examples/demo.sh [TASK]
#
# TASK defaults to DEMO_TASK or caesar1_reworded (a reworded instruction of an
# upstream skill, where composition works; see examples/zoo/README.md).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
: "${O:=build}"
: "${LORAHUB:=$top/$O/lorahub}"
zoo=${ZOO:-$top/examples/zoo}
task=${1:-${DEMO_TASK:-caesar1_reworded}}
out=demo-out
# One BLAS thread: the model is tiny and a busy machine makes more threads slower.
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OPENBLAS_NUM_THREADS

die() { echo "demo: $*" >&2; exit 1; }
[ -x "$LORAHUB" ] || die "no lorahub binary at '$LORAHUB' (run make)"
[ -f "$zoo/base/config.json" ] ||
    die "examples/zoo/base is missing: the bundled zoo is not built (see tools/zoo/build.py)"
[ -d "$zoo/modules" ] || die "examples/zoo/modules is missing: the bundled zoo is not built"
[ -f "$zoo/tasks/$task/fewshot.jsonl" ] && [ -f "$zoo/tasks/$task/test.jsonl" ] ||
    die "no task '$task' in examples/zoo/tasks (needs fewshot.jsonl and test.jsonl)"
lh() { "$LORAHUB" "$@"; }
# the binary as the user would type it from the top directory
show=$LORAHUB
if [ "$(pwd)" = "$top" ]; then case $LORAHUB in "$top"/*) show=${LORAHUB#"$top"/} ;; esac; fi
field() { sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\).*/\1/p" "$2" | head -n 1; }

rm -rf "$out"
mkdir -p "$out"
head -n 100 "$zoo/tasks/$task/test.jsonl" >"$out/test.jsonl"
n_mod=$(find -L "$zoo/modules" -mindepth 1 -maxdepth 1 -type d | wc -l)
n_test=$(wc -l <"$out/test.jsonl")

cat <<EOF
== lorahub demo: task '$task' (held out from the base model and from every module)
The base model in examples/zoo/base never learnt this task; $n_mod LoRA modules in
examples/zoo/modules/ each learnt another one. lorahub adapt sees only these 5 examples:

EOF
sed 's/^/    /' "$zoo/tasks/$task/fewshot.jsonl"
echo
echo "== lorahub adapt (default settings)"
lh adapt --base "$zoo/base" --modules "$zoo/modules" --examples "$zoo/tasks/$task/fewshot.jsonl" \
    -o "$out/adapter" --report "$out/report.json" --trace "$out/trace.tsv" \
    --weights-out "$out/weights.tsv" --force
method=$(field method "$out/report.json")
optimizer=$(field optimizer "$out/report.json")
budget=$(field budget "$out/report.json")
evals=$(field evaluations "$out/report.json")
seed=$(field seed "$out/report.json")
bound=$(field bound "$out/report.json")
l1=$(field l1 "$out/report.json")
secs=$(field wall_seconds "$out/report.json")
loss=$(field rescored_loss "$out/report.json")
w0=$(sed -n '2p' "$out/trace.tsv" | cut -f2)
n_used=$(($(head -n 1 "$out/trace.tsv" | tr '\t' '\n' | wc -l) - 4))
cat <<EOF
Defaults: $n_used modules drawn with seed $seed, merge method $method, optimizer $optimizer,
budget $budget evaluations, weights in [-$bound, $bound], L1 coefficient $l1.
$evals evaluations in $(printf '%.1f' "$secs") s; few-shot loss $(printf '%.3f' "$w0") at w = 0 -> $(printf '%.3f' "$loss").
Largest weights:
EOF
sort -t "$(printf '\t')" -k2,2gr "$out/weights.tsv" | head -n 4 |
    awk -F '\t' '{ n = split($1, p, "/"); printf "    %-14s %+.3f\n", p[n], $2 }'

echo
echo "== exact match on $n_test test examples (lorahub eval, greedy decoding)"
lh eval --base "$zoo/base" --examples "$out/test.jsonl" --metric exact-match --json >"$out/eval-base.json"
lh eval --base "$zoo/base" --adapter "$out/adapter" --examples "$out/test.jsonl" \
    --metric exact-match --json -v >"$out/eval-adapter.json" 2>"$out/eval-adapter.log"
acc() { awk -v a="$(sed -n 's/.*"accuracy":\([0-9.eE+-]*\).*/\1/p' "$1")" 'BEGIN { printf "%5.1f%%", 100 * a }'; }
echo "    zero-shot (base model alone)   $(acc "$out/eval-base.json")"
echo "    base + merged adapter          $(acc "$out/eval-adapter.json")"
if [ "$(acc "$out/eval-adapter.json")" = "$(acc "$out/eval-base.json")" ]; then
    echo "No gain over zero-shot: on the zoo as built, no module solves an unseen task (its"
    echo "README), so no composition can; docs/results.md measures every method on every task."
fi
echo "First test examples with the adapter:"
head -n 3 "$out/test.jsonl" | sed -n 's/.*"input": *"[^"]*\\n\([^"\\]*\)\\n=>".*"output": *"\([^"]*\)".*/\1 => \2/p' >"$out/.want"
grep 'example [123]:' "$out/eval-adapter.log" |
    sed 's/^lorahub eval: example [0-9]*: \([a-z]*\): got \(.*\)/\2 (\1)/' >"$out/.got"
paste -d '|' "$out/.want" "$out/.got" | awk -F '|' '{ printf "    %-34s got %s\n", $1, $2 }'
rm -f "$out/.want" "$out/.got" "$out/eval-adapter.log"

cat <<EOF

== What is in $out/
    adapter/        the merged adapter, a PEFT LoRA directory (F32) for the zoo base model
    report.json     the search: weights per module, losses, evaluations, settings, timings
    trace.tsv       every evaluation: loss, objective, the weights, milliseconds
    weights.tsv     module path <TAB> weight, the input of lorahub compose --weights
    adapter.checkpoint.json  every evaluation, for lorahub adapt --resume
    test.jsonl      the test examples scored above; eval-*.json the two results

== Try next
    $show inspect $out/adapter
    $show compose -m cat --weights $out/weights.tsv -o $out/cat \$(cut -f1 $out/weights.tsv)
    $show adapt --base examples/zoo/base --modules examples/zoo/modules \\
        --examples examples/zoo/tasks/reverse_caesar1/fewshot.jsonl --method cat --preselect 5 \\
        -o $out/blend --force
    sh examples/demo.sh TASK      (another task of examples/zoo/tasks; see examples/zoo/README.md)
    make table                    (every method on every unseen task: docs/results.md)
    man -l man/lorahub-adapt.1    (also lorahub-eval.1, lorahub-compose.1, lorahub-job.5)
EOF
