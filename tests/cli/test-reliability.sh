# Hostile and unlucky inputs (issue 14): a module holding a NaN for every
# merge method, inspect's flag and --check, FIFOs and devices given where
# files go, '-o -', --rank far above what the modules can give, examples
# longer than the model's context. Each refusal is one line naming the
# thing, exits non-zero at once and leaves nothing behind.
. "$TOP/tests/cli/lib.sh"
ZOO="$TOP/examples/zoo"
export OPENBLAS_NUM_THREADS=1
cd "$TMP"
: >out; : >err  # expect_exit's captures live here too
listing() { ls -A "$TMP" | grep -vx '\.ls' | sort; }
snapshot() { listing >"$TMP/.ls"; }
unchanged() { listing | cmp -s - "$TMP/.ls" || { ls -A "$TMP" >&2; fail "files left behind after: $1"; }; }
# refused WANT TEXT cmd...: exit WANT within 20 s, one line holding TEXT, nothing left
refused() {
    want=$1 text=$2; shift 2
    snapshot
    expect_exit "$want" timeout 20 "$@"
    expect_one_line_error
    expect_err_contains "$text"
    unchanged "$*"
}

# ---- a module with one F16 NaN (the issue's reproduction) ----
mkdir h
cp -r "$ZOO/modules/add1" h/nan_A
hlen=$(od -An -tu4 -N4 h/nan_A/adapter_model.safetensors | tr -d ' ')
printf '\000\176' | dd of=h/nan_A/adapter_model.safetensors bs=1 seek=$((8 + hlen)) conv=notrunc 2>/dev/null
for m in lorahub linear cat svd ties dare-linear dare-ties magnitude-prune ties-svd dare-linear-svd \
         dare-ties-svd magnitude-prune-svd; do
    refused 1 "h/nan_A: lora_A of 'model.layers.0.mlp.down_proj' holds nan at element 0" \
        "$LORAHUB" compose -m "$m" h/nan_A "$ZOO/modules/add3" -o merged
done
expect_exit 0 "$LORAHUB" inspect h/nan_A
expect_out_contains "values      1 non-finite value in 1 target (first: lora_A of 'model.layers.0.mlp.down_proj', element 0, nan)"
expect_exit 0 "$LORAHUB" inspect --json h/nan_A
expect_out_contains '"n_nonfinite":1,"nonfinite":{"n_targets":1,"target":"model.layers.0.mlp.down_proj","tensor":"lora_A","element":0,"value":"nan"}'
expect_exit 1 "$LORAHUB" inspect --check h/nan_A "$ZOO/modules/add3"
expect_err_contains "h/nan_A: 1 non-finite value"
[ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "inspect --check: want one line on stderr"
[ "$(grep -c '^  values' "$TMP/out")" -eq 2 ] || fail "inspect --check still shows both modules"
expect_exit 0 "$LORAHUB" inspect --check "$ZOO/modules/add3"
expect_out_contains "values      all finite"
# MoS modules composed in shard space: the same refusal (it wrote NaN before)
case $O in /*) T=$O/tests/tools ;; *) T=$TOP/$O/tests/tools ;; esac
"$T/gen_mos" mos_a.safetensors 3 2 q_proj,v_proj 32:32,32:16 4 2 1
"$T/gen_mos" mos_b.safetensors 3 2 q_proj,v_proj 32:32,32:16 4 2 1
hlen=$(od -An -tu4 -N4 mos_a.safetensors | tr -d ' ')
printf '\000\000\300\177' | dd of=mos_a.safetensors bs=1 seek=$((8 + hlen)) conv=notrunc 2>/dev/null
refused 1 "mos_a.safetensors: pool_A of type 'q_proj' holds nan at element 0" \
    "$LORAHUB" compose -o mos_c.safetensors mos_a.safetensors mos_b.safetensors

# ---- FIFOs (no writer) and devices where files go: refused, never waited on ----
mkfifo fifo
mkdir mf && cp "$ZOO/modules/add1/adapter_config.json" mf/ && mkfifo mf/adapter_model.safetensors
mkdir cf && cp "$ZOO/modules/add1/adapter_model.safetensors" cf/ && mkfifo cf/adapter_config.json
mkdir base && cp "$ZOO/base/config.json" "$ZOO/base/model.safetensors" base/ && mkfifo base/tokenizer.json
mkdir base2 && cp "$ZOO/base/tokenizer.json" "$ZOO/base/model.safetensors" base2/ && mkfifo base2/config.json
mkdir base3 && cp "$ZOO/base/tokenizer.json" "$ZOO/base/config.json" base3/ && mkfifo base3/model.safetensors
FEW="$ZOO/tasks/add2/fewshot.jsonl"
refused 1 "cannot read 'mf/adapter_model.safetensors': it is a FIFO" "$LORAHUB" inspect mf
refused 1 "cannot read 'cf/adapter_config.json': it is a FIFO with no writer" "$LORAHUB" inspect cf
refused 1 "cannot read 'fifo': it is a FIFO" "$LORAHUB" inspect fifo
refused 1 "it is a character device" "$LORAHUB" inspect /dev/null
refused 1 "cannot read 'fifo': it is a FIFO with no writer" \
    "$LORAHUB" compose --weights fifo -o merged "$ZOO/modules/add1"
refused 1 "cannot read 'fifo': it is a FIFO with no writer" \
    "$LORAHUB" eval --base "$ZOO/base" --examples fifo
refused 1 "base/tokenizer.json': it is a FIFO with no writer" \
    "$LORAHUB" eval --base base --examples "$FEW"
refused 1 "base2/config.json': it is a FIFO with no writer" \
    "$LORAHUB" eval --base base2 --examples "$FEW"
refused 1 "base3/model.safetensors': it is a FIFO" \
    "$LORAHUB" eval --base base3 --examples "$FEW"
refused 1 "fifo': it is a FIFO with no writer" "$LORAHUB" adapt fifo -o merged
# a pipe that is being written is read like a file
expect_exit 0 "$LORAHUB" eval --base "$ZOO/base" --examples /dev/stdin <"$FEW"
expect_out_contains "examples  5"

# ---- '-o -' is not a directory ----
refused 2 "'-' is standard output, which cannot hold an adapter directory" \
    "$LORAHUB" compose -o - "$ZOO/modules/add1"
refused 2 "'-' is standard output" "$LORAHUB" convert "$ZOO/modules/add1" -
refused 2 "'-' is standard output" \
    "$LORAHUB" adapt --base "$ZOO/base" --modules "$ZOO/modules" --examples "$FEW" --budget 2 -o -
[ ! -e ./- ] || fail "a directory named '-' was created"

# ---- --rank above what the inputs can give: refused at once ----
refused 2 "svd: rank 100000 is more than these modules can give: at most 16" \
    "$LORAHUB" compose -m svd --rank 100000 -o merged "$ZOO/modules/add1" "$ZOO/modules/add3"
refused 2 "ties-svd: rank 200 is more than these modules can give: at most 128" \
    "$LORAHUB" compose -m ties-svd --rank 200 -o merged "$ZOO/modules/add1" "$ZOO/modules/add3"
expect_exit 0 "$LORAHUB" compose -m svd --rank 16 -o r16 "$ZOO/modules/add1" "$ZOO/modules/add3"
expect_out_contains "rank 16"

# ---- an example longer than the model's 256 positions ----
{
    head -n 1 "$FEW"
    printf '{"input": "'; i=0; while [ $i -lt 400 ]; do printf '7 '; i=$((i + 1)); done
    printf '=>", "output": "8"}\n'
} >long.jsonl
refused 1 "more than the model's context of 256 positions" \
    "$LORAHUB" eval --base "$ZOO/base" --examples long.jsonl
refused 1 "example 2 is " \
    "$LORAHUB" adapt --base "$ZOO/base" --modules "$ZOO/modules" --examples long.jsonl --budget 2 -o merged
refused 1 "of memory available" env LORAHUB_MEM_AVAILABLE=1000 \
    "$LORAHUB" eval --base "$ZOO/base" --examples "$FEW"
