# The bundled T5 zoo (examples/zoo-t5, built by tools/zoo_t5/build.py in
# PyTorch with sentencepiece) read by lorahub alone:
#   1. lorahub tokenize gives sentencepiece's ids for every text of the zoo's
#      task files (tests/fixtures/zoo-t5/spm-ids.tsv, written by the build);
#   2. lorahub eval of each module on its own task's test set reproduces the
#      greedy accuracy the torch build recorded (within 2 points) and its loss
#      (1e-4 relative: the same F32 arithmetic on the F16-rounded base, summed
#      in another order),
#      and the base alone does worse there;
#   3. a paper-preset adapt on an unseen task ends below the w = 0 loss.
. "$TOP/tests/cli/lib.sh"
ZOO="$TOP/examples/zoo-t5"
FIX="$TOP/tests/fixtures/zoo-t5/spm-ids.tsv"
[ -f "$ZOO/base/config.json" ] || fail "$ZOO/base is missing: the bundled T5 zoo is part of the tree"
[ -f "$FIX" ] || fail "$FIX is missing"
export OPENBLAS_NUM_THREADS=1
cd "$TMP"

# ---- 1. tokenizer: every text, in batches of 400 arguments ----
cut -f1 "$FIX" >texts.esc
cut -f2 "$FIX" >want.ids
n=$(wc -l <texts.esc)
[ "$n" -ge 1000 ] || fail "$FIX holds only $n texts"
: >got.ids
split -l 400 texts.esc part.
for p in part.*; do
    set --
    # the fixture escapes newline and backslash (\n, \\); printf %b undoes both
    while IFS= read -r line; do set -- "$@" "$(printf '%b' "$line")"; done <"$p"
    "$LORAHUB" tokenize --base "$ZOO/base" --no-template "$@" >>got.ids ||
        fail "lorahub tokenize failed on $p"
done
if ! cmp -s got.ids want.ids; then
    paste texts.esc got.ids want.ids | awk -F '\t' '$2 != $3 { print "text: " $1 "\n  lorahub:       " $2 "\n  sentencepiece: " $3; if (++k == 3) exit }'
    fail "lorahub tokenize differs from sentencepiece on $(paste got.ids want.ids | awk -F '\t' '$1 != $2' | wc -l) of $n texts"
fi
echo "ok: $n texts tokenized as sentencepiece does"

# ---- 2. each module on its own task, against the build's numbers ----
recorded() { zoo_recorded "$ZOO/results.json" modules "$1" "$2"; }
jnum() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" out; }
mods=0
for d in "$ZOO"/modules/*/; do
    task=$(basename "$d")
    test=$ZOO/tasks/$task/test.jsonl
    want_acc=$(recorded "$task" test_acc)
    want_loss=$(recorded "$task" test_loss)
    [ -n "$want_acc" ] && [ -n "$want_loss" ] || fail "results.json has no test_acc/test_loss for module $task"
    expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter "$d" --examples "$test" --metric both \
        --json --threads 1
    acc=$(jnum accuracy) loss=$(jnum loss)
    awk -v a="$acc" -v w="$want_acc" 'BEGIN { d = a - w; if (d < 0) d = -d; exit !(d <= 0.02 + 1e-9) }' ||
        fail "module $task: lorahub eval accuracy $acc, the torch build recorded $want_acc"
    awk -v a="$loss" -v w="$want_loss" 'BEGIN { d = a - w; if (d < 0) d = -d; exit !(d <= 1e-4 * w) }' ||
        fail "module $task: lorahub eval loss $loss, the torch build recorded $want_loss"
    expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --examples "$test" --metric both --json --threads 1
    bacc=$(jnum accuracy) bloss=$(jnum loss)
    awk -v a="$acc" -v b="$bacc" 'BEGIN { exit !(b < a) }' ||
        fail "module $task: the base alone scores $bacc, not below the module's $acc"
    awk -v a="$loss" -v b="$bloss" 'BEGIN { exit !(a < b) }' ||
        fail "module $task: the base's loss $bloss is not above the module's $loss"
    echo "ok: $task: accuracy $acc (torch $want_acc, base $bacc), loss $loss (torch $want_loss)"
    mods=$((mods + 1))
done
[ "$mods" -ge 6 ] || fail "only $mods modules in $ZOO/modules"

# ---- 3. the paper's setting on an unseen task ----
TASK=reverse_reworded
FEW="$ZOO/tasks/$TASK/fewshot.jsonl"
expect_exit 0 "$LORAHUB" adapt -q --base "$ZOO/base" --modules "$ZOO/modules" --examples "$FEW" \
    --preset paper -o paper --report report.json --trace trace.tsv
[ -f paper/adapter_model.safetensors ] || fail "adapt --preset paper wrote no adapter"
grep -q '"loss_scale": 0.2\b' report.json || fail "report: loss_scale $(grep loss_scale report.json), want 1/5"
# the trace's first evaluation is w = 0 (the base model): its loss is the zero-weight loss
awk -F '\t' 'NR == 2 { for (i = 4; i < NF; i++) if ($i + 0 != 0) exit 1 }' trace.tsv ||
    fail "the first evaluation is not w = 0: $(sed -n 2p trace.tsv)"
zero=$(awk -F '\t' 'NR == 2 { print $2 }' trace.tsv)
res=$(sed -n 's/^ *"rescored_loss": *\([-0-9.eE+]*\).*/\1/p' report.json)
awk -v r="$res" -v z="$zero" 'BEGIN { exit !(r < z) }' ||
    fail "paper preset on $TASK: final loss $res is not below the w = 0 loss $zero"
expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter paper --examples "$FEW" --json --threads 1
awk -v a="$(jnum loss)" -v b="$res" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * b) }' ||
    fail "lorahub eval gives loss $(jnum loss) for the paper adapter, the report says $res"
echo "ok: paper preset on $TASK: loss $zero at w = 0 -> $res"
