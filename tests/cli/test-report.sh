# Pictures, reports and batches on the bundled zoo: the batch example of
# lorahub-job(5) run as written (two tasks, select auto, test files), its
# test accuracy against lorahub eval, auto's decision and counts, the SVG
# validated by xmllint and rendered by rsvg-convert into a PNG that is not
# blank, lorahub report's three formats, and a batch that goes on after
# failed tasks.
. "$TOP/tests/cli/lib.sh"
ZOO="$TOP/examples/zoo"
case $O in /*) T=$O/tests/tools ;; *) T=$TOP/$O/tests/tools ;; esac
[ -x "$T/png_ink" ] || fail "missing $T/png_ink (make $O/tests/tools/png_ink)"
command -v xmllint >/dev/null || fail "xmllint missing: run 'make deps' (libxml2-utils)"
command -v rsvg-convert >/dev/null || fail "rsvg-convert missing: run 'make deps' (librsvg2-bin)"
export OPENBLAS_NUM_THREADS=1
cd "$TMP"
ln -s "$TOP/examples" examples
num() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\).*/\1/p" "$2"; }
str() { sed -n "s/^ *\"$1\": *\"\([^\"]*\)\".*/\1/p" "$2"; }

# ---- the batch EXAMPLE of lorahub-job(5), as written ----
sed -n '/^\.Sh EXAMPLES/,/^\.Sh SEE ALSO/p' "$TOP/man/lorahub-job.5" |
    awk '/^\.Bd -literal/ { on = 1; block = ""; next }
         /^\.Ed/ { if (block ~ /tasks:/) print block; on = 0; next }
         on { block = block $0 "\n" }' >jobs.yaml
grep -q '^tasks:' jobs.yaml || fail "lorahub-job.5 has no batch example: $(cat jobs.yaml)"
expect_exit 0 "$LORAHUB" adapt -q jobs.yaml
[ ! -s out ] || fail "-q printed the summary: $(cat out)"
tasks=$(sed -n 's/^  - name: //p' jobs.yaml)
[ "$(echo $tasks | wc -w)" -eq 2 ] || fail "the example has tasks: $tasks"
[ "$(wc -l <runs/summary.tsv)" -eq 3 ] || fail "summary.tsv: $(cat runs/summary.tsv)"
head -n 1 runs/summary.tsv | grep -q "^task	select	method	optimizer	evals	loss	test	seconds	modules$" ||
    fail "summary.tsv header: $(head -n 1 runs/summary.tsv)"
grep -q '^| task | select |' runs/summary.md || fail "summary.md: $(cat runs/summary.md)"
for t in $tasks; do
    d=runs/$t
    for f in adapter/adapter_model.safetensors report.json report.svg weights.tsv trace.tsv; do
        [ -e "$d/$f" ] || fail "batch task $t wrote no $f: $(ls "$d")"
    done
    [ "$(str task "$d/report.json")" = "$t" ] || fail "$t: report names task $(str task "$d/report.json")"
    # test accuracy: the report's against lorahub eval of the written adapter
    test=$(sed -n "/name: $t\$/,/name:/s/^ *test: //p" jobs.yaml | head -n 1)
    expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter "$d/adapter" --examples "$test" \
        --metric exact-match --json --threads 1
    eacc=$(sed -n 's/.*"accuracy":\([-0-9.eE+]*\).*/\1/p' out)
    racc=$(num test_accuracy "$d/report.json")
    awk -v a="$eacc" -v b="$racc" 'BEGIN { exit !(a == b) }' ||
        fail "$t: report test_accuracy $racc, lorahub eval $eacc"
    # the summary row: the report's numbers
    row=$(awk -F '\t' -v t="$t" '$1 == t' runs/summary.tsv)
    [ "$(echo "$row" | cut -f5)" = "$(num evaluations "$d/report.json")" ] || fail "$t: summary row $row"
    [ "$(echo "$row" | cut -f6)" = "$(awk -v l="$(num rescored_loss "$d/report.json")" 'BEGIN { printf "%.4f", l }')" ] ||
        fail "$t: summary loss in $row, report $(num rescored_loss "$d/report.json")"
    [ "$(echo "$row" | cut -f7)" = "$(awk -v a="$racc" 'BEGIN { printf "%.4f", a }')" ] || fail "$t: summary test in $row"

    # select auto: the decision follows the held-out losses, the budget covers the folds
    budget=$(num budget "$d/report.json")
    dec=$(str auto_decision "$d/report.json")
    awk -v s="$(num auto_search_loss "$d/report.json")" -v b="$(num auto_single_loss "$d/report.json")" \
        -v d="$dec" 'BEGIN { exit !((s < b) == (d == "search")) }' ||
        fail "$t: decision $dec against held-out losses $(grep auto_ "$d/report.json")"
    fb=$(num auto_fold_budget "$d/report.json")
    [ "$(num auto_folds "$d/report.json")" = 5 ] && [ "$fb" -eq $((budget / 6)) ] ||
        fail "$t: 5 examples give 5 folds of budget $((budget / 6)): $(grep auto_ "$d/report.json")"
    ev=$(num evaluations "$d/report.json")
    rows=$(($(wc -l <"$d/trace.tsv") - 1))
    [ "$ev" -le "$budget" ] && [ "$ev" -eq $(($(num auto_evaluations "$d/report.json") + rows)) ] ||
        fail "$t: $ev evaluations, budget $budget, folds $(num auto_evaluations "$d/report.json"), refit $rows"
    [ "$(num auto_other_evaluations "$d/report.json")" -eq $((5 * (24 + 2))) ] ||
        fail "$t: the folds scored 24 modules alone and 2 held-out candidates each"
    [ "$(grep -c '<circle' "$d/report.svg")" -eq "$rows" ] || fail "$t: the plot has not one dot per evaluation"
done
# caesar1_reworded rewords the caesar1 module's task: the single module wins
[ "$(str auto_decision runs/caesar1_reworded/report.json)" = best-single ] &&
    grep -q '"caesar1": 1$' runs/caesar1_reworded/report.json ||
    fail "auto on caesar1_reworded: $(grep -A2 weights runs/caesar1_reworded/report.json)"
[ "$(num evaluations runs/caesar1_reworded/report.json)" = "$(num auto_evaluations runs/caesar1_reworded/report.json)" ] ||
    fail "a best-single refit searches nothing"
# ... and its held-out loss is caesar1's loss on each example alone, averaged
FEW=examples/zoo/tasks/caesar1_reworded/fewshot.jsonl
sum=0
for i in 1 2 3 4 5; do
    sed -n "${i}p" "$FEW" >one.jsonl
    expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter "$ZOO/modules/caesar1" --examples one.jsonl --json --threads 1
    sum=$(awk -v s="$sum" -v l="$(sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' out)" 'BEGIN { printf "%.17g", s + l }')
done
awk -v m="$sum" -v a="$(num auto_single_loss runs/caesar1_reworded/report.json)" \
    'BEGIN { m /= 5; d = m - a; if (d < 0) d = -d; exit !(d <= 1e-4 * m) }' ||
    fail "auto_single_loss $(num auto_single_loss runs/caesar1_reworded/report.json), lorahub eval per example: mean of $sum / 5"
echo "ok: batch example; auto decisions $(cat runs/*/report.json | str auto_decision /dev/stdin | tr '\n' ' ')"

# ---- the picture: well-formed, renders, not blank ----
for t in $tasks; do
    svg=runs/$t/report.svg
    xmllint --noout "$svg" 2>err.txt || fail "$svg is not well-formed XML: $(cat err.txt)"
    rsvg-convert -o "$t.png" "$svg" 2>err.txt || fail "rsvg-convert $svg: $(cat err.txt)"
    set -- $("$T/png_ink" "$t.png")
    ink=$2
    set -- $("$T/png_ink" "$t.png" 3b6fb6)
    blue=$2
    [ "$ink" -gt 20000 ] && [ "$blue" -gt 500 ] ||
        fail "$t.png looks blank: $ink non-background pixels, $blue of the bars' blue"
done
echo "ok: report.svg valid and rendered ($ink pixels drawn, $blue blue)"

# ---- --plot FILE, --no-plot, the default name beside a YAML report ----
A="--base $ZOO/base --modules $ZOO/modules --examples $FEW"
expect_exit 0 "$LORAHUB" adapt -q $A --report r1.yaml --plot pic.svg
[ -f pic.svg ] && [ ! -e r1.svg ] || fail "--plot pic.svg wrote: $(ls)"
expect_exit 0 "$LORAHUB" adapt -q $A --report r2.yaml
[ -f r2.svg ] || fail "no r2.svg beside r2.yaml"
expect_exit 0 "$LORAHUB" adapt -q $A --report r3.json --no-plot
[ ! -e r3.svg ] || fail "--no-plot drew r3.svg"
expect_exit 1 "$LORAHUB" adapt -q $A --report r2.yaml --plot r2.svg --weights-out w.tsv
expect_err_contains "report 'r2.yaml' exists"
expect_exit 1 "$LORAHUB" adapt -q $A --report r4.json --plot r2.svg
expect_err_contains "plot 'r2.svg' exists"

# ---- lorahub report ----
expect_exit 0 "$LORAHUB" report runs/caesar1_reworded/report.json runs/word_reverse_plural/report.json r2.yaml
[ "$(wc -l <out)" -eq 4 ] || fail "report table: $(cat out)"
head -n 1 out | grep -q '^task  *select  *method  *optimizer  *evals  *loss  *test  *seconds  *modules$' ||
    fail "report header: $(head -n 1 out)"
grep -q '^fewshot  *best-single  *cat  *-  *0  ' out || fail "the YAML report's row: $(cat out)"
expect_exit 0 "$LORAHUB" report --tsv runs/*/report.json
awk -F '\t' 'NF != 9 { exit 1 }' out || fail "TSV rows without 9 fields: $(cat out)"
expect_exit 0 "$LORAHUB" report --markdown runs/*/report.json
sed -n 2p out | grep -q '^|---|---|---|---|---:|---:|---:|---:|---|$' || fail "markdown: $(cat out)"
expect_exit 1 "$LORAHUB" report runs/caesar1_reworded/report.json runs/caesar1_reworded/trace.tsv
expect_one_line_error
expect_exit 1 "$LORAHUB" report runs/caesar1_reworded/adapter/adapter_config.json
expect_one_line_error
expect_err_contains "adapter_config.json: not a lorahub adapt report (no 'weights' mapping)"
expect_exit 2 "$LORAHUB" report
expect_err_contains "no report given"

# ---- a batch goes on after failed tasks; the exit status counts them ----
cat >bad.yaml <<YAML
base: examples/zoo/base
modules: examples/zoo/modules
output: bad
tasks:
  - name: missing
    examples: examples/zoo/tasks/no_such_task/fewshot.jsonl
  - name: good
    examples: examples/zoo/tasks/reverse_reworded/fewshot.jsonl
  - name: unknown_optimizer_later
    examples: examples/zoo/tasks/reverse_reworded/fewshot.jsonl
    budget: 0
YAML
expect_exit 2 "$LORAHUB" adapt -q bad.yaml
expect_err_contains "budget '0'"
sed -i 's/    budget: 0/    backend-cmd: false\n    backend: exec/' bad.yaml
expect_exit 2 "$LORAHUB" adapt bad.yaml
[ -f bad/good/report.json ] && [ -f bad/good/adapter/adapter_config.json ] || fail "the good task did not run: $(ls bad)"
awk -F '\t' '$1 == "failed" && $2 == "missing" && $10 ~ /no_such_task/' bad/summary.tsv | grep -q . ||
    fail "summary.tsv: $(cat bad/summary.tsv)"
awk -F '\t' '$1 == "ok" && $2 == "good"' bad/summary.tsv | grep -q . || fail "summary.tsv: $(cat bad/summary.tsv)"
expect_err_contains "bad.yaml: 2 of 3 tasks failed"
grep -q '^status  *task' out || fail "the printed summary: $(cat out)"
# the outputs exist now: a second run fails every task (exit 3) unless --force
expect_exit 3 "$LORAHUB" adapt -q bad.yaml
expect_exit 2 "$LORAHUB" adapt -q --force bad.yaml
# refused before any task runs
printf 'output: o\nreport: r.json\ntasks:\n  - name: a\n    examples: x.jsonl\n' >r.yaml
expect_exit 2 "$LORAHUB" adapt r.yaml
expect_err_contains "key 'report': a batch writes it per task"
printf 'output: o\ntasks:\n  - name: a\n    examples: x.jsonl\n  - name: a\n    examples: y.jsonl\n' >d.yaml
expect_exit 2 "$LORAHUB" adapt d.yaml
expect_err_contains "a second task named 'a'"
printf 'output: o\ntasks:\n  - name: ../up\n    examples: x.jsonl\n' >n.yaml
expect_exit 2 "$LORAHUB" adapt n.yaml
expect_err_contains "name '../up' is not a plain file name"
printf 'tasks:\n  - name: a\n    examples: x.jsonl\n' >o.yaml
expect_exit 2 "$LORAHUB" adapt o.yaml
expect_err_contains "a batch job needs 'output: DIR'"
echo "ok: batch failures counted; report formats"
