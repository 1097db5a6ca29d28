# lorahub on a T5 base (tests/fixtures/t5, written by tools/t5_torch.py):
# eval's loss and token count are the PyTorch reference's (input + </s>
# encoded, output + </s> decoded, no BOS), with and without the LoRA; adapt
# runs the paper preset on it; a T5 adapter on a LLaMA base is refused.
. "$TOP/tests/cli/lib.sh"
FIX="$TOP/tests/fixtures/t5"
cd "$TMP"
jget() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$TMP/out"; }
ref() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\),*\$/\1/p" "$FIX/flan-expected.json"; }
close() { # close GOT WANT: within 1e-4 relative
    awk -v g="$1" -v w="$2" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(d <= 1e-4 * w) }'
}

expect_exit 0 "$LORAHUB" eval --base "$FIX/flan" --examples "$FIX/examples.jsonl" --json
close "$(jget loss)" "$(ref text_loss_base)" || fail "base loss $(jget loss), reference $(ref text_loss_base)"
[ "$(jget tokens)" = "$(ref text_tokens)" ] || fail "tokens $(jget tokens), reference $(ref text_tokens)"
expect_exit 0 "$LORAHUB" eval --base "$FIX/flan" --adapter "$FIX/flan-lora" \
    --examples "$FIX/examples.jsonl" --json
close "$(jget loss)" "$(ref text_loss_lora)" || fail "LoRA loss $(jget loss), reference $(ref text_loss_lora)"

# the paper preset end to end on the one module (its objective is the
# loss divided by the 4 examples, plus the L1 term)
expect_exit 0 "$LORAHUB" adapt --base "$FIX/flan" --modules "$FIX/flan-lora" \
    --examples "$FIX/examples.jsonl" --preset paper --budget 3 -o out.d --report r.json \
    --trace t.tsv
[ -f out.d/adapter_model.safetensors ] || fail "no adapter written"
grep -q '"loss_scale": 0.25' r.json || fail "report: loss_scale $(grep loss_scale r.json)"
awk -F'\t' 'NR > 1 { w = $4 < 0 ? -$4 : $4; d = $3 - ($2 / 4 + 0.05 * w);
                     if (d > 1e-6 || d < -1e-6) bad = 1 } END { exit bad }' t.tsv ||
    fail "trace objective is not loss/4 + 0.05|w|: $(cat t.tsv)"

# a T5 module on a LLaMA base names the target it cannot place
expect_exit 1 "$LORAHUB" eval --base "$TOP/tests/fixtures/native/a" --adapter "$FIX/flan-lora" \
    --examples "$FIX/examples.jsonl"
expect_err_contains "block.0.layer.0.SelfAttention.k' is not an adaptable linear layer"
