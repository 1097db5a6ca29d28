#!/bin/sh
# examples/demo.sh - `make demo`: adapt to one unseen task of the bundled zoo
# three ways (lorahub adapt's default, a search, the paper's settings), then
# compare the base model and the three adapters on the task's test set.
# Outputs go to ./demo-out/ (replaced).
#
#   LORAHUB=build/lorahub sh examples/demo.sh [TASK]
#
# TASK defaults to DEMO_TASK or mix_reverse_add1 (a mixture: letters to reverse and
# numbers to add one to, under an instruction no module saw; see examples/zoo/README.md).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
: "${O:=build}"
: "${LORAHUB:=$top/$O/lorahub}"
zoo=${ZOO:-$top/examples/zoo}
task=${1:-${DEMO_TASK:-mix_reverse_add1}}
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

# the task's kind and the modules it needs (examples/zoo/unseen.tsv: task, kind, skills, instruction)
kind=$(awk -F '\t' -v t="$task" '$1 == t { print $2 }' "$zoo/unseen.tsv" 2>/dev/null)
skills=$(awk -F '\t' -v t="$task" '$1 == t { gsub(/,/, " and ", $3); print $3 }' "$zoo/unseen.tsv" 2>/dev/null)
cat <<EOF
== lorahub demo: task '$task' (held out from the base model and from every module)
The base model in examples/zoo/base knows 24 skills under their own instructions; the
$n_mod LoRA modules in examples/zoo/modules/ each carry one of them to other wordings.
EOF
case $kind in
mixture) echo "This task is a mixture: each example needs one of $skills, told by its input," ;;
reworded) echo "This task asks for $skills" ;;
'') ;;
*) echo "This task is of the kind '$kind'${skills:+ (modules that matter: $skills)}," ;;
esac
[ -z "$kind" ] || echo "under an instruction no module and not the base has seen."
echo "lorahub adapt sees only these 5 examples:"
echo
sed 's/^/    /' "$zoo/tasks/$task/fewshot.jsonl"
echo
echo "== lorahub adapt, three ways"
# 1. the default: score every module alone, keep the best (the best mean in docs/results.md)
lh adapt -q --task "$task" --base "$zoo/base" --modules "$zoo/modules" --examples "$zoo/tasks/$task/fewshot.jsonl" \
    -o "$out/adapter" --report "$out/report.json" --weights-out "$out/weights.tsv" --force
# 2. a search (any search setting asks for one): the best 3 modules, cat, COBYLA 40
lh adapt -q --task "$task" --base "$zoo/base" --modules "$zoo/modules" --examples "$zoo/tasks/$task/fewshot.jsonl" \
    --budget 40 -o "$out/composed" --report "$out/composed.json" --trace "$out/trace.tsv" \
    --weights-out "$out/composed-weights.tsv" --force
# 3. the paper's settings: 20 modules drawn with the seed, lorahub method, COBYLA 40
lh adapt -q --task "$task" --base "$zoo/base" --modules "$zoo/modules" --examples "$zoo/tasks/$task/fewshot.jsonl" \
    --preset paper -o "$out/paper" --report "$out/paper.json" --force
best=$(cut -f1 "$out/weights.tsv"); best=${best##*/}
secs() { printf '%.1f' "$(field wall_seconds "$1")"; }
loss() { printf '%.3f' "$(field rescored_loss "$1")"; }
w0=$(sed -n '2p' "$out/trace.tsv" | cut -f2)
cat <<EOF
    default   every one of the $n_mod modules scored alone, the best kept: $best
              ($(field preselect_evaluations "$out/report.json") single-module scores in $(secs "$out/report.json") s; few-shot loss $(printf '%.3f' "$w0") at w = 0 -> $(loss "$out/report.json"))
    composed  --budget 40: the best 3 modules composed with cat, COBYLA, 40 evaluations
              ($(secs "$out/composed.json") s; few-shot loss -> $(loss "$out/composed.json")); weights:
EOF
awk -F '\t' '{ n = split($1, p, "/"); printf "                %-14s %+.3f\n", p[n], $2 }' "$out/composed-weights.tsv"
cat <<EOF
    paper     --preset paper: 20 modules drawn with seed 42, lorahub method, COBYLA, 40 evaluations
              ($(secs "$out/paper.json") s; few-shot loss -> $(loss "$out/paper.json"))

EOF

echo "== exact match on $n_test test examples (lorahub eval, greedy decoding)"
acc() { awk -v a="$(sed -n 's/.*"accuracy":\([0-9.eE+-]*\).*/\1/p' "$1")" 'BEGIN { printf "%5.1f%%", 100 * a }'; }
lh eval --base "$zoo/base" --examples "$out/test.jsonl" --metric exact-match --json >"$out/eval-base.json"
echo "    zero-shot (base model alone)   $(acc "$out/eval-base.json")"
for v in adapter:default composed:composed paper:paper; do
    d=${v%%:*} name=${v#*:}
    lh eval --base "$zoo/base" --adapter "$out/$d" --examples "$out/test.jsonl" \
        --metric exact-match --json -v >"$out/eval-$name.json" 2>"$out/eval-$name.log"
    printf '    %-30s %s\n' "$name" "$(acc "$out/eval-$name.json")"
done
echo "First test examples with the default adapter (one module) and the composed one:"
head -n 3 "$out/test.jsonl" | sed -n 's/.*"input": *"[^"]*\\n\([^"\\]*\)\\n=>".*"output": *"\([^"]*\)".*/\1 => \2/p' >"$out/.want"
got() { grep 'example [123]:' "$out/eval-$1.log" |
    sed 's/^lorahub eval: example [0-9]*: \([a-z]*\): got \(.*\)/\2 (\1)/'; }
got default >"$out/.got"
got composed >"$out/.got2"
paste -d '|' "$out/.want" "$out/.got" "$out/.got2" |
    awk -F '|' '{ printf "    %-26s default: %-22s composed: %s\n", $1, $2, $3 }'
rm -f "$out/.want" "$out/.got" "$out/.got2" "$out"/eval-*.log

# ---- the paper's own setting: a Flan-T5-architecture base and LoRA modules on
# q and v of every attention, as adapter_model.bin (examples/zoo-t5) ----
t5zoo=${T5_ZOO:-$top/examples/zoo-t5}
t5task=${T5_TASK:-reverse_reworded}
[ -f "$t5zoo/base/config.json" ] && [ -d "$t5zoo/modules" ] ||
    die "examples/zoo-t5 is missing: the bundled T5 zoo is not built (see tools/zoo_t5/build.py)"
[ -f "$t5zoo/tasks/$t5task/fewshot.jsonl" ] && [ -f "$t5zoo/tasks/$t5task/test.jsonl" ] ||
    die "no task '$t5task' in examples/zoo-t5/tasks"
mkdir -p "$out/t5"
n_t5=$(find -L "$t5zoo/modules" -mindepth 1 -maxdepth 1 -type d | wc -l)
cat <<EOF

== The paper's setting: Flan-T5 architecture (examples/zoo-t5), task '$t5task'
A T5 v1.1 base (gated-gelu, untied head, relative buckets, Unigram tokenizer) and $n_t5 LoRA
modules in the LoraHub hub's format (PEFT SEQ_2_SEQ_LM, q and v of every attention, adapter_model.bin):
    $show adapt --base examples/zoo-t5/base --modules examples/zoo-t5/modules \\
        --examples examples/zoo-t5/tasks/$t5task/fewshot.jsonl --preset paper -o $out/t5/paper
EOF
lh adapt -q --task "$t5task" --base "$t5zoo/base" --modules "$t5zoo/modules" \
    --examples "$t5zoo/tasks/$t5task/fewshot.jsonl" --preset paper -o "$out/t5/paper" \
    --report "$out/t5/paper.json" --trace "$out/t5/trace.tsv" --force
# for comparison, lorahub adapt's default: the best single module by few-shot loss
lh adapt -q --task "$t5task" --base "$t5zoo/base" --modules "$t5zoo/modules" \
    --examples "$t5zoo/tasks/$t5task/fewshot.jsonl" -o "$out/t5/default" \
    --report "$out/t5/default.json" --weights-out "$out/t5/default-weights.tsv" --force
lh eval --base "$t5zoo/base" --adapter "$out/t5/default" --examples "$t5zoo/tasks/$t5task/test.jsonl" \
    --metric exact-match --json >"$out/t5/eval-default.json"
t5best=$(cut -f1 "$out/t5/default-weights.tsv"); t5best=${t5best##*/}
lh eval --base "$t5zoo/base" --examples "$t5zoo/tasks/$t5task/test.jsonl" --metric exact-match --json \
    >"$out/t5/eval-base.json"
lh eval --base "$t5zoo/base" --adapter "$out/t5/paper" --examples "$t5zoo/tasks/$t5task/test.jsonl" \
    --metric exact-match --json >"$out/t5/eval-paper.json"
w0=$(sed -n '2p' "$out/t5/trace.tsv" | cut -f2)
cat <<EOF
    paper     20 modules drawn with seed 42 (all $n_t5 here), lorahub method, COBYLA, 40 evaluations
              ($(secs "$out/t5/paper.json") s; few-shot loss $(printf '%.3f' "$w0") at w = 0 -> $(loss "$out/t5/paper.json"))
    exact match on $(wc -l <"$t5zoo/tasks/$t5task/test.jsonl") test examples (lorahub eval, greedy decoding):
        zero-shot (base model alone)   $(acc "$out/t5/eval-base.json")
        paper preset                   $(acc "$out/t5/eval-paper.json")
        $(printf '%-30s' "default (best single: $t5best)") $(acc "$out/t5/eval-default.json")
EOF

cat <<EOF

== What is in $out/
    adapter/        the default's result, a PEFT LoRA directory (F32) for the zoo base model
    report.json     its report: every module's single-module loss, the settings, timings
    report.svg      its picture (beside every report): the objective per evaluation, the
                    weights, every module's loss alone; composed.svg, paper.svg the same
    weights.tsv     module path <TAB> weight, the input of lorahub compose --weights
    composed/, composed.json, composed-weights.tsv   the same for the search
    trace.tsv       every evaluation of the search: loss, objective, the weights, milliseconds
    paper/, paper.json   the paper preset's adapter and report
    t5/             the paper's setting on examples/zoo-t5: paper/, paper.json, trace.tsv, eval-*.json,
                    and the default's default/, default.json
    *.checkpoint.json    every evaluation, for lorahub adapt --resume
    test.jsonl      the test examples scored above; eval-*.json the four results

== Try next
    $show inspect $out/adapter
    $show compose -m cat --weights $out/composed-weights.tsv -o $out/cat \$(cut -f1 $out/composed-weights.tsv)
    $show adapt --base examples/zoo/base --modules examples/zoo/modules \\
        --examples examples/zoo/tasks/mix_caesar1_add10_antonym/fewshot.jsonl --budget 200 \\
        -o $out/mix3 --force      (a mixture of three skills: composing won by 14 points)
    sh examples/demo.sh TASK      (another task of examples/zoo/tasks; see examples/zoo/README.md)
    $show report $out/report.json $out/composed.json $out/paper.json   (the three runs as a table)
    $show adapt --base examples/zoo/base --modules examples/zoo/modules \\
        --examples examples/zoo/tasks/antonym_reworded/fewshot.jsonl --select auto --budget 240 \\
        --report $out/auto.json --force   (let the examples choose: cross-validation; see $out/auto.svg)
    make table                    (every method on every unseen task: docs/results.md)
    man -l man/lorahub-adapt.1    (also lorahub-eval.1, lorahub-compose.1, lorahub-job.5)
EOF
