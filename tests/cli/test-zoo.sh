# lorahub adapt on the bundled zoo (examples/zoo): a short search must find
# weights whose objective beats w = 0 (the first evaluation of COBYLA), and the
# adapter it writes, scored again by lorahub eval on the same examples, must
# give the loss the report states (rescored_loss) to 1e-4 relative.
. "$TOP/tests/cli/lib.sh"
ZOO="$TOP/examples/zoo"
TASK=caesar1_reworded
[ -f "$ZOO/base/config.json" ] || fail "$ZOO/base is missing: the bundled zoo is part of the tree"
FEW="$ZOO/tasks/$TASK/fewshot.jsonl"
[ -f "$FEW" ] || fail "$FEW is missing"
export OPENBLAS_NUM_THREADS=1
cd "$TMP"

expect_exit 0 "$LORAHUB" adapt -q --base "$ZOO/base" --modules "$ZOO/modules" --examples "$FEW" \
    --budget 10 --optimizer cobyla -o merged --report report.json --trace trace.tsv
num() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\).*/\1/p" report.json; }
[ "$(num evaluations)" = 10 ] || fail "evaluations $(num evaluations), want 10"
rows=$(($(wc -l <trace.tsv) - 1))
[ "$rows" -eq 10 ] || fail "trace has $rows evaluations, want 10"

# evaluation 1 is w = 0: every weight column (4 .. NF-1) is zero
awk -F '\t' 'NR == 2 { for (i = 4; i < NF; i++) if ($i + 0 != 0) exit 1 }' trace.tsv ||
    fail "the first evaluation is not w = 0: $(sed -n 2p trace.tsv)"
obj0=$(awk -F '\t' 'NR == 2 { print $3 }' trace.tsv)
best=$(num best_objective)
# the best row of the trace is the reported one
tbest=$(awk -F '\t' 'NR > 1 && (m == "" || $3 < m) { m = $3 } END { print m }' trace.tsv)
awk -v a="$best" -v b="$tbest" 'BEGIN { exit !(a == b) }' ||
    fail "best_objective $best is not the trace's minimum $tbest"
awk -v b="$best" -v z="$obj0" 'BEGIN { exit !(b < z - 1e-3) }' ||
    fail "the search did not beat w = 0: best objective $best, w = 0 gives $obj0"

# the written adapter reproduces the rescored loss
[ -f merged/adapter_config.json ] && [ -f merged/adapter_model.safetensors ] ||
    fail "no PEFT directory written"
res=$(num rescored_loss)
expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter merged --examples "$FEW" --json --threads 1
eloss=$(sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' out)
awk -v a="$eloss" -v b="$res" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * b) }' ||
    fail "lorahub eval gives loss $eloss for the written adapter, the report says $res"
# and it is not the base model's loss
expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --examples "$FEW" --json --threads 1
base=$(sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' out)
awk -v a="$eloss" -v b="$base" 'BEGIN { exit !(a < b) }' || fail "adapter loss $eloss not below base $base"
echo "ok: w=0 objective $obj0 -> $best; rescored $res, eval $eloss"

# ---- every module against the build's own numbers (tools/zoo, PyTorch): lorahub eval
# on the module's test set gives the accuracy and loss the build recorded, and under
# other wordings (test-other-wording.jsonl: what the module adds to a base that knows
# the skill under its canonical instruction) the accuracy recorded, above the base's ----
jnum() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" out; }
rec() { zoo_recorded "$ZOO/results.json" modules "$1" "$2"; }
mods=0
for d in "$ZOO"/modules/*/; do
    t=$(basename "$d")
    for k in test_acc test_loss other_wording_acc; do
        [ -n "$(rec "$t" $k)" ] || fail "$ZOO/results.json has no $k for module $t"
    done
    expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter "$d" --examples "$ZOO/tasks/$t/test.jsonl" \
        --metric both --json --threads 1
    acc=$(jnum accuracy) loss=$(jnum loss)
    near "$acc" "$(rec "$t" test_acc)" 0.02 0 ||
        fail "module $t: lorahub eval accuracy $acc, the torch build recorded $(rec "$t" test_acc)"
    near "$loss" "$(rec "$t" test_loss)" 0 1e-4 ||
        fail "module $t: lorahub eval loss $loss, the torch build recorded $(rec "$t" test_loss)"
    ow=$ZOO/tasks/$t/test-other-wording.jsonl
    expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter "$d" --examples "$ow" --metric exact-match \
        --json --threads 1
    oacc=$(jnum accuracy)
    near "$oacc" "$(rec "$t" other_wording_acc)" 0.02 0 ||
        fail "module $t: other wordings $oacc, the torch build recorded $(rec "$t" other_wording_acc)"
    expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --examples "$ow" --metric exact-match --json --threads 1
    awk -v a="$oacc" -v b="$(jnum accuracy)" 'BEGIN { exit !(b < a) }' ||
        fail "module $t: the base alone scores $(jnum accuracy) under other wordings, not below the module's $oacc"
    mods=$((mods + 1))
done
[ "$mods" -ge 20 ] || fail "only $mods modules in $ZOO/modules"
echo "ok: $mods modules: lorahub eval = the torch build's accuracy and loss, above the base under other wordings"

# ---- the zoo's MoS modules (one routing): composed in shard space, the result
# is an MoS file that scores like the same composition of the materialized modules ----
MOS="$ZOO/mos"
RT="$ZOO/tasks/reverse/test.jsonl"
head -n 30 "$RT" >rev30.jsonl
loss_of() { sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' "$1"; }
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t * (b < 0 ? -b : b)) }'; }
expect_exit 0 "$LORAHUB" compose -w 0.5,0.5 -o mix.safetensors "$MOS/reverse.safetensors" "$MOS/double.safetensors"
expect_out_contains "in shard space"
expect_exit 0 "$LORAHUB" inspect --json mix.safetensors
expect_out_contains '"format":"mos"'
expect_exit 0 "$LORAHUB" convert mix.safetensors mix-peft
expect_exit 0 "$LORAHUB" compose -w 0.5,0.5 -o mix-materialized "$MOS/reverse.safetensors" "$MOS/double.safetensors"
expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter mix-peft --examples rev30.jsonl --json --threads 1
cp out e1.json
expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter mix-materialized --examples rev30.jsonl --json --threads 1
cp out e2.json
close "$(loss_of e1.json)" "$(loss_of e2.json)" 1e-4 ||
    fail "shard-space composition loss $(loss_of e1.json) != materialized composition $(loss_of e2.json)"
# weight 1 on reverse alone keeps the trained module's skill (the build's MoS test accuracy)
expect_exit 0 "$LORAHUB" compose -w 1,0 -o rev.safetensors "$MOS/reverse.safetensors" "$MOS/double.safetensors"
expect_exit 0 "$LORAHUB" convert rev.safetensors rev-peft
expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --adapter rev-peft --examples "$RT" --metric exact-match \
    --json --threads 1
acc=$(sed -n 's/.*"accuracy":\([-0-9.eE+]*\).*/\1/p' out)
want=$(zoo_recorded "$ZOO/results.json" mos reverse test_acc)
[ -n "$want" ] || fail "$ZOO/results.json has no test_acc for the MoS module reverse"
near "$acc" "$want" 0.02 0 || fail "MoS reverse via shard space: accuracy $acc on reverse, the build recorded $want"
# an MoS output needs the lorahub method, and MoS inputs
expect_exit 2 "$LORAHUB" compose -m cat -o bad.safetensors "$MOS/reverse.safetensors" "$MOS/double.safetensors"
expect_err_contains "-m lorahub"
expect_exit 1 "$LORAHUB" compose -o bad.safetensors "$MOS/reverse.safetensors" "$ZOO/modules/double"
[ ! -e bad.safetensors ] || fail "an MoS output was written from a PEFT input"
echo "ok: MoS shard-space loss $(loss_of e1.json) = materialized $(loss_of e2.json); reverse accuracy $acc"

# ---- the zoo EXAMPLES of man/lorahub-adapt.1, run as written ----
mkdir manex && cd manex && ln -s "$TOP/examples" examples
sed -n '/^\.Sh EXAMPLES/,/^\.Sh SEE ALSO/p' "$TOP/man/lorahub-adapt.1" |
    awk '/^\.Bd -literal/ { on = 1; block = ""; next }
         /^\.Ed/ { if (block ~ /examples\/zoo/) print block; on = 0; next }
         on { gsub(/\\e/, "\\"); block = block $0 "\n" }' >zoo-examples.sh
[ "$(grep -c '^lorahub adapt' zoo-examples.sh)" -ge 2 ] || fail "lorahub-adapt.1 has no zoo examples: $(cat zoo-examples.sh)"
sed 's/^lorahub /"$LORAHUB" /' zoo-examples.sh >run.sh
sh run.sh >/dev/null 2>err.txt || fail "lorahub-adapt.1 EXAMPLES failed: $(cat err.txt)"
[ -f best/adapter_model.safetensors ] && [ -f blend/adapter_model.safetensors ] && [ -f blend.json ] ||
    fail "lorahub-adapt.1 EXAMPLES wrote: $(ls)"
grep -q '"select": "search"' blend.json || fail "the compose example did not search"
cd ..
