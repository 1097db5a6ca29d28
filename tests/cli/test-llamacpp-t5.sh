# --backend llamacpp on a T5 (encoder-decoder) GGUF base against the native
# T5, on tests/fixtures/t5gguf (tools/t5_gguf_fixture.py: a tiny random
# Flan-T5-shaped model, gated-gelu, untied head, 2 + 2 layers, inputs of up
# to 107 tokens, with a sentencepiece Unigram vocabulary; the same weights
# as a HF directory and as an F32 GGUF; q/v LoRA modules on the encoder
# self-attention, the decoder self-attention and the cross-attention, all
# three, and one on every other linear layer: k, o and the gated FFN).
#
# This is also issue 13's independent cross-check of the native T5 against
# llama.cpp's own T5 (its graph, its UGM tokenizer, its position buckets):
#  - native losses equal the float64 PyTorch reference (tools/t5_torch.py)
#    in expected.json (1e-5 relative; runs without llama.cpp too);
#  - llama.cpp's losses equal native's within 1e-3 relative for w = 0, each
#    module alone and a 3-module cat (merged by lorahub compose), with the
#    same token counts; each module moves the loss by more than 3e-3;
#  - greedy generation (lorahub eval's exact match) gives native's outputs;
#  - adapt's losses with --method cat (runtime scales in llama.cpp, merged
#    in native) agree within 1e-3 at the points both searches visit.
. "$TOP/tests/cli/lib.sh"
F="$TOP/tests/fixtures/t5gguf"
export OPENBLAS_NUM_THREADS=1
cd "$TMP"

jloss() { sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' "$TMP/out"; }
jtokens() { sed -n 's/.*"tokens":\([0-9]*\).*/\1/p' "$TMP/out"; }
expected() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\).*/\1/p" "$F/expected.json"; }
# close A B RTOL WHAT
close() {
    awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a - b; if (d < 0) d = -d;
        exit !(a != "" && b != "" && a == a + 0 && b == b + 0 && d <= r * (b < 0 ? -b : b)) }' ||
        fail "$4: $1 against $2 (relative tolerance $3)"
}
native() { expect_exit 0 "$LORAHUB" eval --base "$F/base" --examples "$F/examples.jsonl" --threads 1 --json "$@"; jloss; }
llama() { expect_exit 0 "$LORAHUB" eval --backend llamacpp --base-gguf "$F/base.gguf" --examples "$F/examples.jsonl" --threads 1 --json "$@"; jloss; }

# ---- native against the PyTorch reference ----
n=$(native)
[ "$(jtokens)" = "$(expected tokens)" ] || fail "native scores $(jtokens) tokens, the reference $(expected tokens)"
close "$n" "$(expected loss_base)" 1e-5 "native base model against PyTorch"
for m in enc-self dec-self cross all k-o-ffn; do
    close "$(native --adapter "$F/modules/$m")" "$(expected "loss_$m")" 1e-5 "native $m against PyTorch"
done

[ "${LORAHUB_LLAMACPP:-}" = yes ] || exit 0 # test-llamacpp.sh checks the message

# ---- w = 0, each module alone, a 3-module cat ----
base=$(native)
l=$(llama); [ "$(jtokens)" = "$(expected tokens)" ] || fail "llamacpp scores $(jtokens) tokens, native $(expected tokens)"
close "$l" "$base" 1e-3 "llamacpp base model against native"
for m in enc-self dec-self cross all k-o-ffn; do
    n=$(native --adapter "$F/modules/$m")
    l=$(llama --adapter "$F/modules/$m")
    close "$l" "$n" 1e-3 "llamacpp $m against native"
    awk -v n="$n" -v b="$base" 'BEGIN { d = n - b; if (d < 0) d = -d; exit !(d > 3e-3 * b) }' ||
        fail "module $m moves the loss only from $base to $n"
done
m1="$F/modules/enc-self" m2="$F/modules/dec-self" m3="$F/modules/cross"
expect_exit 0 "$LORAHUB" compose -m cat -w 1.0,0.9,-0.5 -o cat3 "$m1" "$m2" "$m3"
close "$(llama --adapter cat3)" "$(native --adapter cat3)" 1e-3 "llamacpp 3-module cat against native"

# ---- calls of many examples, and one input longer than a 512-token call ----
# (llama_encode takes a call in one ubatch; 71 examples take several calls)
awk 'BEGIN { split("the river cold water stone tree forest bird fish small large old new quiet", w, " ");
    s = ""; for (i = 0; i < 700; i++) s = s (i ? " " : "") w[(i * 7 + int(i / 5)) % 14 + 1]
    printf "{\"input\": \"%s\", \"output\": \"the old river\"}\n", s
    for (k = 0; k < 70; k++) { s = ""; for (i = 0; i <= k % 23; i++) s = s (i ? " " : "") w[(k + i * 3) % 14 + 1]
        printf "{\"input\": \"%s\", \"output\": \"%s\"}\n", s, (k % 5 ? w[k % 14 + 1] " water" : "") } }' >many.jsonl
n=$(native --examples many.jsonl --adapter "$F/modules/all")
nt=$(jtokens)
l=$(llama --examples many.jsonl --adapter "$F/modules/all")
[ "$(jtokens)" = "$nt" ] || fail "many.jsonl: llamacpp scores $(jtokens) tokens, native $nt"
close "$l" "$n" 1e-3 "llamacpp on 71 examples, one of 700 words"

# ---- greedy generation: native's outputs (no near-tie within max_new_tokens: the fixture's seed) ----
k=$(expected max_new_tokens)
for a in "" "$F/modules/all"; do
    expect_exit 0 "$LORAHUB" eval --base "$F/base" --examples "$F/examples.jsonl" ${a:+--adapter "$a"} \
        --metric exact-match --max-new-tokens "$k" --threads 1 -v
    grep 'example [0-9]*:' err >native.gen
    expect_exit 0 "$LORAHUB" eval --base-gguf "$F/base.gguf" --examples "$F/examples.jsonl" ${a:+--adapter "$a"} \
        --metric exact-match --max-new-tokens "$k" --threads 1 -v
    grep 'example [0-9]*:' err >llama.gen
    [ "$(wc -l <native.gen)" -eq 5 ] || fail "no per-example lines: $(cat err)"
    cmp -s native.gen llama.gen || fail "greedy outputs${a:+ with $a} differ: $(diff native.gen llama.gen)"
done

# ---- adapt: --method cat by runtime scales (llama.cpp) and merged (native) ----
for b in native llama; do
    if [ $b = native ]; then set -- --base "$F/base"; else set -- --backend llamacpp --base-gguf "$F/base.gguf"; fi
    expect_exit 0 "$LORAHUB" adapt -q "$@" --modules "$m1,$m2,$m3" --examples "$F/examples.jsonl" \
        --method cat --select search --preselect 0 --budget 6 --optimizer cobyla --threads 1 \
        --trace $b.tsv -o $b-out
done
# llama.cpp's 1e-5 differences steer COBYLA to slightly other points after
# the start: compare the rows whose weights agree to 1e-3, at least 5
paste native.tsv llama.tsv | awk -F '\t' -v nf="$(head -1 native.tsv | awk -F '\t' '{print NF}')" '
    function abs(x) { return x < 0 ? -x : x }
    NR > 1 { same = 1; for (c = 4; c < nf; c++) if (abs($c - $(nf + c)) > 1e-3) same = 0
             if (!same) next; k++
             if (!(abs($2 - $(nf + 2)) <= 1e-3 * $2)) { print "row " NR - 1 ": native " $2 ", llamacpp " $(nf + 2); bad = 1 } }
    END { if (k < 5) { print "only " k " rows at the same weights"; bad = 1 } exit bad }' >diff.txt ||
    fail "adapt losses differ: $(cat diff.txt)"
