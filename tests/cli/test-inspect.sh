# lorahub inspect: tables and JSON for PEFT and MoS inputs made by the seeded
# fixture tools, and bad inputs that must give exit 1, one line on stderr
# and nothing on stdout.
. "$TOP/tests/cli/lib.sh"
case $O in /*) T=$O/tests/tools ;; *) T=$TOP/$O/tests/tools ;; esac
cd "$TMP"

# 2 layers x {q_proj 32->32, v_proj 32->16}, r 4, alpha 8:
# params = 2*4*(32+32) + 2*4*(32+16) = 896, scale 2
"$T/gen_peft" good 1 --layers 2 --types q_proj:32:32,v_proj:32:16 --r 4 --alpha 8
expect_exit 0 "$LORAHUB" inspect good
expect_out_contains "format      peft"
expect_out_contains "base model  tiny-llama"
expect_out_contains "q_proj     2 layers  r 4  32 -> 32  scale 2"
expect_out_contains "v_proj     2 layers  r 4  32 -> 16  scale 2"
expect_out_contains "parameters  896"
expect_out_contains "dtypes      F32"
[ ! -s "$TMP/err" ] || fail "stderr not empty"

expect_exit 0 "$LORAHUB" inspect -v good
expect_out_contains "model.layers.1.self_attn.v_proj  r 4  32 -> 16  alpha 8  scale 2"

# rslora and a per-layer rank: scale 8/sqrt(4) = 4 and 8/sqrt(16) = 2
"$T/gen_peft" rs 2 --layers 2 --types q_proj:32:32 --r 4 --alpha 8 --rslora --layer-rank 1=16 --dtype bf16
expect_exit 0 "$LORAHUB" inspect --json rs
expect_out_contains '"format":"peft"'
expect_out_contains '"r":16,'
expect_out_contains '"use_rslora":true'
expect_out_contains '"dtypes":["BF16"]'
expect_out_contains '{"name":"model.layers.0.self_attn.q_proj","r":4,"d_in":32,"d_out":32,"alpha":8,"scale":4}'
expect_out_contains '{"name":"model.layers.1.self_attn.q_proj","r":16,"d_in":32,"d_out":32,"alpha":8,"scale":2}'

# MoS: 2 layers, r 4, l 2, private rank 1, alpha 16 -> scale 4
"$T/gen_mos" m.safetensors 3 2 q_proj,v_proj 32:32,32:16 4 2 1
expect_exit 0 "$LORAHUB" inspect --json good m.safetensors
[ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "want 2 JSON lines"
expect_out_contains '"format":"mos"'
expect_out_contains '"n_params":896'
expect_out_contains '"routing_hash":"'
if /usr/bin/python3 -c 'import json' 2>/dev/null; then
    /usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["format"] for r in rows] == ["peft", "mos"], rows
for r in rows:
    assert r["n_targets"] == len(r["targets"]) == 4
    assert r["n_params"] == sum(t["r"] * (t["d_in"] + t["d_out"]) for t in r["targets"])
assert all(t["scale"] == 4 for t in rows[1]["targets"])
' "$TMP/out" || fail "JSON output does not hold together"
fi

# usage
expect_exit 2 "$LORAHUB" inspect
expect_exit 2 "$LORAHUB" inspect --bogus good

# bad inputs: exit 1, one line naming the file, nothing on stdout
bad() {
    expect_exit 1 "$LORAHUB" inspect "$@"
    expect_one_line_error
}
mkdir trunc && cp good/adapter_config.json trunc/
head -c 300 good/adapter_model.safetensors >trunc/adapter_model.safetensors
bad trunc
expect_err_contains "trunc/adapter_model.safetensors"
bad --json trunc
printf 'this is not an adapter\n' >garbage.safetensors
bad garbage.safetensors
expect_err_contains "garbage.safetensors"
mkdir noconf && cp good/adapter_model.safetensors noconf/
bad noconf
expect_err_contains "adapter_config.json"
bad no-such-dir
expect_err_contains "no-such-dir"
mkdir dora && cp good/adapter_model.safetensors dora/
sed 's/"use_dora": false/"use_dora": true/' good/adapter_config.json >dora/adapter_config.json
bad dora
expect_err_contains "DoRA"
head -c 2000 m.safetensors >badmos.safetensors
bad badmos.safetensors
expect_err_contains "badmos.safetensors"

# a bad path among good ones: the good ones still print, exit 1
expect_exit 1 "$LORAHUB" inspect --json good garbage.safetensors m.safetensors
[ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "want the 2 good JSON lines"
[ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "want 1 error line"
expect_err_contains "garbage.safetensors"

# modules made to share routing report the same routing hash; another
# routing seed gives another one
"$T/gen_mos" m2.safetensors 4 2 q_proj,v_proj 32:32,32:16 4 2 1 --same-routing-as m.safetensors
"$T/gen_mos" m3.safetensors 5 2 q_proj,v_proj 32:32,32:16 4 2 1 --routing-seed 3
"$T/gen_mos" m4.safetensors 6 2 q_proj,v_proj 32:32,32:16 4 2 1 --routing-seed 4
expect_exit 0 "$LORAHUB" inspect --json m.safetensors m2.safetensors m3.safetensors m4.safetensors
[ "$(grep -o '"routing_hash":"[0-9a-f]*"' "$TMP/out" | sort -u | wc -l)" -eq 2 ] \
    || fail "want exactly 2 distinct routing hashes"
h1=$(sed -n 1p "$TMP/out" | grep -o '"routing_hash":"[0-9a-f]*"')
h2=$(sed -n 2p "$TMP/out" | grep -o '"routing_hash":"[0-9a-f]*"')
h4=$(sed -n 4p "$TMP/out" | grep -o '"routing_hash":"[0-9a-f]*"')
[ "$h1" = "$h2" ] || fail "--same-routing-as changed the routing"
[ "$h1" != "$h4" ] || fail "another routing seed gave the same routing"

# the EXAMPLES of man/lorahub-inspect.1, run as written (jq ones need jq)
mkdir hub
"$T/gen_peft" hub/math 7 --layers 2 --r 4
"$T/gen_peft" hub/code 8 --layers 2 --r 8
mkdir lorahub && cp -r "$TOP/tests/fixtures/torch/t5-lora" lorahub/flan_t5_large-glue_sst2
sed -n '/^\.Sh EXAMPLES/,/^\.Sh SEE/p' "$TOP/man/lorahub-inspect.1" |
    sed -n 's/^\.Dl \$ //p' | sed -e 's/\\&//g' -e 's/\\e/\\/g' >ex.cmds
[ "$(wc -l <ex.cmds)" -eq 3 ] || fail "expected 3 examples in lorahub-inspect.1"
lorahub() { "$LORAHUB" "$@"; }
while IFS= read -r cmd; do
    case $cmd in *jq*) command -v jq >/dev/null || continue ;; esac
    eval "$cmd" </dev/null >ex.out 2>ex.err || { cat ex.err >&2; fail "man example failed: $cmd"; }
    case $cmd in
    *jq*) printf 'hub/code\t8\nhub/math\t4\n' | cmp -s - ex.out || fail "jq example gave: $(cat ex.out)" ;;
    *flan_t5*) grep -q 'stacks      encoder 4, decoder 4, cross-attention 4' ex.out ||
        fail "the torch .bin example lacks the stack counts" ;;
    *) grep -q 'model.layers.1.self_attn.v_proj  r 4' ex.out || fail "-v example lacks the targets" ;;
    esac
done <ex.cmds

# PEFT's pattern rules, checked against Python's own re (the reference's
# engine): alpha_pattern keys in several orders (first match wins, with
# re.match(rf"(.*\.)?({key})$", name)), and target_modules as a regex string
# (re.fullmatch) deciding which configs load at all.
if command -v /usr/bin/python3 >/dev/null; then
"$T/gen_peft" pat 11 --layers 3 --types q_proj:16:16,v_proj:16:8,down_proj:32:16 --r 4 --alpha 8
/usr/bin/python3 - "$LORAHUB" <<'PY' || fail "pattern rules differ from Python's re"
import itertools, json, re, subprocess, sys
lorahub = sys.argv[1]
cfg = json.load(open("pat/adapter_config.json"))
keys = ["q_proj", r"layers\.1\..*", r"self_attn\.(q|v)_proj", "proj", r"layers.[02].mlp.down_proj",
        ".*v_proj", r"(?:model\.)?layers\.0\.self_attn\.q_proj", "q_proj|down_proj", "_proj"]
def run():
    json.dump(cfg, open("pat/adapter_config.json", "w"))
    p = subprocess.run([lorahub, "inspect", "--json", "pat"], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr
names = None
checked = 0
for n, perm in enumerate(itertools.permutations(keys, 4)):
    if n % 97:
        continue
    cfg["alpha_pattern"] = {k: float(i + 1) for i, k in enumerate(perm)}
    cfg["target_modules"] = ["q_proj", "v_proj", "down_proj"]
    rc, out, err = run()
    assert rc == 0, err
    got = json.loads(out)
    for t in got["targets"]:
        want = cfg["lora_alpha"]
        for k, v in cfg["alpha_pattern"].items():
            if re.match(rf"(.*\.)?({k})$", t["name"]):
                want = v
                break
        assert t["alpha"] == want, (perm, t["name"], t["alpha"], want)
        assert abs(t["scale"] - want / t["r"]) < 1e-6
        checked += 1
    names = [t["name"] for t in got["targets"]]
cfg["alpha_pattern"] = {}
for rx in [r"model\.layers\.\d+\.(self_attn|mlp)\.\w+", r".*_proj", r".*(q|v)_proj",
           r"model\.layers\.[0-2]\..*", "q_proj", r".*\.(q_proj|v_proj|down_proj)", r".*layers\.[01]\..*"]:
    cfg["target_modules"] = rx
    rc, out, err = run()
    want_ok = all(re.fullmatch(rx, n) for n in names)
    assert (rc == 0) == want_ok, (rx, rc, err)
    if not want_ok:
        assert out == "" and err.count("\n") == 1 and "target_modules" in err, err
    checked += 1
print(checked, "decisions agree", file=sys.stderr)
PY
fi
