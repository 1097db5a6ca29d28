# torch.save adapters (adapter_model.bin): inspect and compose read them like
# safetensors, a .bin and a .safetensors of the same tensors compose to the
# same bytes, and hostile files are refused with one line naming the file.
# Fixtures: tests/fixtures/torch (tools/make_torch_fixtures.py, torch itself).
. "$TOP/tests/cli/lib.sh"
FIX="$TOP/tests/fixtures/torch"
cd "$TMP"

# a T5 seq2seq adapter: q and v of encoder self-, decoder self- and
# cross-attention, 2 layers, r 4, alpha 8
expect_exit 0 "$LORAHUB" inspect "$FIX/t5-lora"
expect_out_contains "task type   SEQ_2_SEQ_LM"
expect_out_contains "targets     12"
expect_out_contains "stacks      encoder 4, decoder 4, cross-attention 4"
expect_out_contains "q          6 layers  r 4  16 -> 16  scale 2"
expect_out_contains "dtypes      F32"
expect_exit 0 "$LORAHUB" inspect --json "$FIX/t5-lora-default" "$FIX/t5-lora/adapter_model.bin"
expect_out_contains '"seq2seq":{"encoder":4,"decoder":4,"cross_attention":4}'
expect_out_contains '"dtypes":["BF16"]'
expect_out_contains '{"name":"decoder.block.1.layer.1.EncDecAttention.v","r":4,"d_in":16,"d_out":16,"alpha":8,"scale":2}'
[ "$(grep -c '"seq2seq"' out)" -eq 2 ] || fail "want both adapters' stack counts"

# compose: the .bin and the .safetensors copy give byte-identical outputs
cp -r "$FIX/t5-lora" bin && cp -r "$FIX/t5-lora-st" st && cp -r "$FIX/t5-lora-default" def
expect_exit 0 "$LORAHUB" compose -w 0.7,-0.4 -o from-bin bin def
expect_exit 0 "$LORAHUB" compose -w 0.7,-0.4 -o from-st st def
cmp from-bin/adapter_model.safetensors from-st/adapter_model.safetensors ||
    fail ".bin and .safetensors inputs composed differently"
expect_exit 0 "$LORAHUB" inspect from-bin
expect_out_contains "stacks      encoder 4, decoder 4, cross-attention 4"
expect_out_contains "task type   SEQ_2_SEQ_LM"
# the weights matter: a different weight gives different bytes
expect_exit 0 "$LORAHUB" compose -w 0.5,-0.4 -o other bin def
! cmp -s from-bin/adapter_model.safetensors other/adapter_model.safetensors ||
    fail "the weights did not change the composition"

# convert: a .bin adapter becomes portable safetensors, the same bytes as
# converting the safetensors copy
expect_exit 0 "$LORAHUB" convert bin conv-bin
expect_exit 0 "$LORAHUB" convert st conv-st
cmp conv-bin/adapter_model.safetensors conv-st/adapter_model.safetensors ||
    fail "convert of .bin and .safetensors differ"
cmp conv-bin/adapter_config.json conv-st/adapter_config.json || fail "converted configs differ"
grep -q '"task_type": "SEQ_2_SEQ_LM"' conv-bin/adapter_config.json || fail "task_type lost"

# refused, by name, with nothing left behind
bad() { # bad TEXT FILE
    mkdir -p "adapter-$2" && cp "$FIX/t5-lora/adapter_config.json" "adapter-$2/"
    cp "$FIX/$2" "adapter-$2/adapter_model.bin"
    expect_exit 1 "$LORAHUB" compose -w 1,1 -o out-"$2" bin "adapter-$2"
    expect_one_line_error
    expect_err_contains "$1"
    expect_err_contains "adapter-$2/adapter_model.bin"
    [ ! -e out-"$2" ] || fail "compose left out-$2 behind"
    expect_exit 1 "$LORAHUB" inspect "adapter-$2"
    expect_one_line_error
    expect_err_contains "$1"
}
bad "global 'posix.system'" evil.bin
bad "legacy format" legacy.bin
bad "not contiguous" noncontig.bin
head -c 2000 "$FIX/t5-lora/adapter_model.bin" >cut.bin
mkdir cut && cp "$FIX/t5-lora/adapter_config.json" cut/ && mv cut.bin cut/adapter_model.bin
expect_exit 1 "$LORAHUB" inspect cut
expect_one_line_error
expect_err_contains "cut/adapter_model.bin: no zip end of central directory record"
