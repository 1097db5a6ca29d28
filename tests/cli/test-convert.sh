# lorahub convert: PEFT -> PEFT in another dtype, MoS -> PEFT, overwrite
# refusal, and bad inputs (exit 1, one line on stderr, nothing written).
. "$TOP/tests/cli/lib.sh"
case $O in /*) T=$O/tests/tools ;; *) T=$TOP/$O/tests/tools ;; esac
cd "$TMP"

"$T/gen_peft" in 5 --layers 3 --types q_proj:32:32,v_proj:32:16 --r 4 --alpha 16 --layer-rank 1=8
expect_exit 0 "$LORAHUB" convert --dtype bf16 in o16
[ ! -s "$TMP/out" ] || fail "convert printed on stdout"
[ -f o16/adapter_config.json ] && [ -f o16/adapter_model.safetensors ] || fail "files missing"
grep -q '"lora_alpha": 4,' o16/adapter_config.json || fail "lora_alpha is not r"
grep -q '"use_rslora": false' o16/adapter_config.json || fail "use_rslora"
grep -q '"model\\\\.layers\\\\.1\\\\.self_attn\\\\.q_proj": 8' o16/adapter_config.json \
    || fail "no rank_pattern entry for the rank-8 layer"
expect_exit 0 "$LORAHUB" inspect --json o16
expect_out_contains '"dtypes":["BF16"]'
# 3 layers, rank 4 but 8 in layer 1: 4*64*2 + 8*64 + 4*48*2 + 8*48 = 1792
expect_out_contains '"n_params":1792'
grep -q '"scale":4' "$TMP/out" && fail "a scale was not folded"
expect_out_contains '{"name":"model.layers.1.self_attn.v_proj","r":8,"d_in":32,"d_out":16,"alpha":8,"scale":1}'

# the same delta W after conversion (F32 out, so exact up to rounding)
expect_exit 0 "$LORAHUB" convert in out32
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    /usr/bin/python3 - in out32 <<'PY' || fail "delta W changed"
import json, struct, sys, torch
torch.set_num_threads(1)
def load(d):
    raw = open(d + "/adapter_model.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    out = {}
    for k, v in hdr.items():
        b, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(raw[8 + n + b:8 + n + e]), dtype=torch.float32).reshape(v["shape"])
    return out, json.load(open(d + "/adapter_config.json"))
(ti, ci), (to, co) = load(sys.argv[1]), load(sys.argv[2])
for k in ti:
    if ".lora_A." not in k:
        continue
    kb = k.replace("lora_A", "lora_B")
    r = ti[k].shape[0]
    si = ci["lora_alpha"] / r
    di = si * ti[kb] @ ti[k]
    do = (co["lora_alpha"] / co["r"] if to[k].shape[0] == co["r"] else 1.0) * to[kb] @ to[k]
    assert torch.allclose(di, do, rtol=1e-5, atol=1e-6), k
PY
fi

# MoS -> PEFT: 3 layers x {q_proj, v_proj}, r 4: 3*4*64 + 3*4*48 = 1344
"$T/gen_mos" m.safetensors 9 3 q_proj,v_proj 32:32,32:16 4 2 1 --rank-scale
expect_exit 0 "$LORAHUB" convert m.safetensors mpeft
expect_exit 0 "$LORAHUB" inspect --json mpeft
expect_out_contains '"format":"peft"'
expect_out_contains '"n_targets":6'
expect_out_contains '"n_params":1344'
expect_out_contains '"base_model":"tiny-llama"'

# an existing output is refused, --force replaces it
expect_exit 1 "$LORAHUB" convert m.safetensors mpeft
expect_one_line_error
expect_err_contains "mpeft"
expect_exit 0 "$LORAHUB" convert --force --dtype f16 --base-model other/base m.safetensors mpeft
expect_exit 0 "$LORAHUB" inspect --json mpeft
expect_out_contains '"dtypes":["F16"]'
expect_out_contains '"base_model":"other/base"'

# usage errors
expect_exit 2 "$LORAHUB" convert --dtype f64 in x
expect_exit 2 "$LORAHUB" convert in
expect_exit 2 "$LORAHUB" convert --dtype
[ ! -e x ] || fail "usage error wrote output"

# bad inputs: exit 1, one line, nothing on stdout, nothing written
bad() {
    expect_exit 1 "$LORAHUB" convert "$@" res
    expect_one_line_error
    [ ! -e res ] || fail "output written for a bad input"
    ls | grep -q '\.tmp' && fail "temporary left behind"
    return 0
}
printf 'garbage' >g.safetensors
bad g.safetensors
expect_err_contains "g.safetensors"
mkdir tr && cp in/adapter_config.json tr/ && head -c 500 in/adapter_model.safetensors >tr/adapter_model.safetensors
bad tr
mkdir nc && cp in/adapter_model.safetensors nc/
bad nc
expect_err_contains "adapter_config.json"
bad missing
mkdir pk && cp in/adapter_config.json pk/ && printf 'x' >pk/adapter_model.bin
bad pk
expect_err_contains "not a torch zip file"

# the EXAMPLES of man/lorahub-convert.1, run as written
mkdir hub
"$T/gen_peft" hub/code 8 --layers 2 --r 4 --rslora --layer-rank 1=8
"$T/gen_mos" math.mos.safetensors 10 2 q_proj,v_proj 32:32,32:16 4 2 1
mkdir code-portable hub/base
printf '{"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2}\n' >hub/base/config.json
sed -n '/^\.Sh EXAMPLES/,/^\.Sh SEE/p' "$TOP/man/lorahub-convert.1" |
    sed -n 's/^\.Dl \$ //p' | sed -e 's/\\&//g' -e 's/\\e/\\/g' >ex.cmds
[ "$(wc -l <ex.cmds)" -eq 3 ] || fail "expected 3 examples in lorahub-convert.1"
lorahub() { "$LORAHUB" "$@"; }
while IFS= read -r cmd; do
    eval "$cmd" </dev/null >ex.out 2>ex.err || { cat ex.err >&2; fail "man example failed: $cmd"; }
done <ex.cmds
expect_exit 0 "$LORAHUB" inspect --json math-peft code-portable
expect_out_contains '"dtypes":["BF16"]'
expect_out_contains '"use_rslora":false'
grep -q '"use_rslora":true' "$TMP/out" && fail "rslora survived the conversion"
expect_exit 0 "$LORAHUB" inspect --json code.gguf
expect_out_contains '"format":"gguf"'
expect_out_contains '"dtypes":["F16"]'

# ---- GGUF: llama.cpp LoRA adapters ----
FIX="$TOP/tests/fixtures/gguf"
mkdir base
printf '{"model_type": "llama", "num_hidden_layers": 3, "num_attention_heads": 4,
 "num_key_value_heads": 2}\n' >base/config.json
expect_exit 2 "$LORAHUB" convert in g.gguf
expect_err_contains "a .gguf output needs the base model"
[ ! -e g.gguf ] || fail "usage error wrote g.gguf"
# rank 4 with rank 8 in layer 1, lora_alpha 16: alpha/r is the scale of every
# target, so the file holds the bytes as they are and converts back exactly
expect_exit 0 "$LORAHUB" convert in g.gguf --base base
[ ! -s "$TMP/out" ] || fail "convert printed on stdout"
expect_exit 0 "$LORAHUB" inspect --json g.gguf
expect_out_contains '"format":"gguf"'
expect_out_contains '"n_params":1792'
expect_out_contains '{"name":"model.layers.1.self_attn.v_proj","r":8,"d_in":32,"d_out":16,"alpha":16,"scale":2}'
expect_exit 0 "$LORAHUB" convert g.gguf gback
expect_exit 0 "$LORAHUB" convert in gref
cmp gback/adapter_model.safetensors gref/adapter_model.safetensors || fail "PEFT -> GGUF -> PEFT changed"
cmp gback/adapter_config.json gref/adapter_config.json || fail "configs differ"
# F16 and a GGUF base model (gguf-py wrote its header): arch and heads from its keys
expect_exit 0 "$LORAHUB" convert --dtype f16 g.gguf g16.gguf --base "$FIX/base-llama.gguf"
# an adapter is not a base model: it has no llama.attention.head_count
expect_exit 1 "$LORAHUB" convert --dtype f16 g.gguf g16b.gguf --base g.gguf
expect_err_contains "head counts"
[ ! -e g16b.gguf ] || fail "g16b.gguf written"
expect_exit 1 "$LORAHUB" convert --dtype f16 g.gguf g16.gguf --base base
expect_one_line_error
expect_err_contains "g16.gguf: already exists (use --force to replace it)"
expect_exit 0 "$LORAHUB" convert --force --dtype f16 g.gguf g16.gguf --base base
expect_exit 0 "$LORAHUB" inspect --json g16.gguf
expect_out_contains '"dtypes":["F16"]'
# MoS -> GGUF
expect_exit 0 "$LORAHUB" convert m.safetensors m.gguf --base base
expect_exit 0 "$LORAHUB" inspect --json m.gguf
expect_out_contains '"n_targets":6'
# a GGUF adapter written by llama.cpp's gguf-py: its heads come from --base
expect_exit 0 "$LORAHUB" convert "$FIX/llama-f32.gguf" fx --base "$FIX/base-llama"
expect_exit 0 "$LORAHUB" convert "$FIX/llama-peft" fxref
cmp fx/adapter_model.safetensors fxref/adapter_model.safetensors || fail "gguf-py fixture differs"
# refusals: one line naming the file, nothing written
bad "$FIX/llama-f32.gguf"
expect_err_contains "llama-f32.gguf: "
expect_err_contains "give the base model (--base)"
bad "$FIX/qwen2.gguf" --base base
expect_err_contains "qwen2.gguf: a GGUF adapter for architecture 'qwen2', but the base model is 'llama'"
bad in --base nowhere
expect_err_contains "cannot open base model 'nowhere'"
head -c $(($(wc -c <g.gguf) - 10)) g.gguf >cut.gguf
bad cut.gguf
expect_err_contains "cut.gguf: tensor "
expect_err_contains "runs past the end of the file"
head -c 200 g.gguf >cut.gguf
bad cut.gguf
expect_err_contains "cut.gguf: 9 key/value pairs and 12 tensors cannot fit in a file of 200 bytes"
mkdir gpt2 && printf '{"model_type": "gpt2"}\n' >gpt2/config.json
expect_exit 1 "$LORAHUB" convert in x.gguf --base gpt2
expect_one_line_error
expect_err_contains "no GGUF tensor-name map for architecture 'gpt2'"
[ ! -e x.gguf ] || fail "x.gguf written"
ls | grep -q '\.tmp' && fail "temporary left behind"
true
