# lorahub compose: the man page's examples, the options, and every bad input
# (each must fail with one line on stderr and leave nothing behind).
. "$TOP/tests/cli/lib.sh"
GEN="$TOP/$O/tests/tools/gen_peft"
[ -x "$GEN" ] || fail "missing $GEN (make $O/tests/tools/gen_peft)"
cd "$TMP"
mkdir hub
"$GEN" hub/task1 1 --layers 2 --r 4 --alpha 8
"$GEN" hub/task2 2 --layers 2 --r 4 --alpha 16
"$GEN" hub/wide 3 --layers 2 --r 4 --types q_proj:32:48,v_proj:32:16
"$GEN" hub/r8 4 --layers 2 --r 8

# nothing but the expected entries may be left in $TMP after a failure
# (.ls itself is left out: "ls | sort >.ls" may or may not list it, a race)
listing() { ls -A "$TMP" | grep -vx '\.ls' | sort; }
snapshot() { listing >"$TMP/.ls"; }
unchanged() { listing | cmp -s - "$TMP/.ls" || { ls -A "$TMP" >&2; fail "files left behind after: $1"; }; }
bad() { # bad WANT_EXIT TEXT args...
    want=$1 text=$2; shift 2
    snapshot
    expect_exit "$want" "$LORAHUB" compose "$@"
    expect_one_line_error
    expect_err_contains "$text"
    unchanged "compose $*"
}

# ---- the EXAMPLES of man/lorahub-compose.1, run as written ----
sed -n '/^\.Sh EXAMPLES/,/^\.Sh SEE/p' "$TOP/man/lorahub-compose.1" >ex.mdoc
sed -n '/^\.Bd -literal/,/^\.Ed/p' ex.mdoc | grep -v '^\.' >weights.yaml
sed -n 's/^\.Dl //p' ex.mdoc | sed -e 's/\\&//g' -e 's/\\e/\\/g' >ex.cmds
lorahub() { "$LORAHUB" "$@"; }
n=0
while IFS= read -r cmd; do
    eval "$cmd" </dev/null >ex.out 2>ex.err || { cat ex.err >&2; fail "man example failed: $cmd"; }
    n=$((n + 1))
done <ex.cmds
[ "$n" -eq 4 ] || fail "expected 4 examples in the man page, ran $n"
for d in merged svd4 ties catted; do
    [ -s "$d/adapter_config.json" ] && [ -s "$d/adapter_model.safetensors" ] || fail "example output $d incomplete"
done
grep -q '"method":"cat"' ex.out || fail "the stdin example's --json lacks the method: $(cat ex.out)"
grep -q '"rank":8' ex.out || fail "cat of two rank-4 modules must have rank 8: $(cat ex.out)"
grep -q '"dtype":"bf16"' ex.out || fail "dtype not reported: $(cat ex.out)"
grep -q '"path":"hub/task2","weight":1' ex.out || fail "stdin modules/default weights: $(cat ex.out)"
grep -q '"lora_alpha": 8' catted/adapter_config.json || fail "alpha must equal the rank (8)"
grep -q '"use_rslora": false' catted/adapter_config.json || fail "use_rslora must be false"

# ---- options ----
expect_exit 0 "$LORAHUB" compose -m svd --rank 3 --clamp 0.99 -w 1,1 -o s3 hub/task1 hub/task2
expect_out_contains "composed 2 modules with svd into s3: rank 3"
expect_exit 0 "$LORAHUB" compose -m dare_ties --density 0.5 --seed 9 --majority-sign frequency \
    -w 0.5,0.5 -o dt hub/task1 hub/task2
expect_out_contains "with dare-ties"
expect_exit 0 "$LORAHUB" compose -m dare-ties --density 0.5 --seed 9 --majority-sign frequency \
    -w 0.5,0.5 -o dt2 hub/task1 hub/task2
cmp -s dt/adapter_model.safetensors dt2/adapter_model.safetensors || fail "same seed, different output"
expect_exit 0 "$LORAHUB" compose -m magnitude-prune-svd --density 0.3 --rank 2 --dtype f16 -o mp hub/task1 hub/task2
# --peft: the svd forms scale twice (task2 has scale 4: a different result)
expect_exit 0 "$LORAHUB" compose -m svd --peft -w 1,1 -o peft hub/task1 hub/task2
expect_exit 0 "$LORAHUB" compose -m svd -w 1,1 -o exact hub/task1 hub/task2
cmp -s peft/adapter_model.safetensors exact/adapter_model.safetensors && fail "--peft changed nothing"
expect_exit 0 "$LORAHUB" compose -o one hub/task1
expect_out_contains "composed 1 module with lorahub into one: rank 4"
# weights as a JSON list, as TSV, and as a mapping keyed by path, from stdin
printf '[0.25, -1.5]\n' >w.json
expect_exit 0 "$LORAHUB" compose --weights w.json --json -o wj hub/task1 hub/task2
expect_out_contains '"weight":-1.5'
printf '# module\tweight\ntask2\t2\nhub/task1\t0.5\n' >w.tsv
expect_exit 0 "$LORAHUB" compose --weights w.tsv --json -o wt hub/task1 hub/task2
expect_out_contains '"path":"hub/task1","weight":0.5'
expect_out_contains '"path":"hub/task2","weight":2'
printf 'hub/task1: 1\nhub/task2: 3\n' | "$LORAHUB" compose --weights - --json -o ws hub/task1 hub/task2 >out
grep -q '"weight":3' out || fail "weights from stdin"
# --force replaces, and the replacement differs
expect_exit 0 "$LORAHUB" compose -w 2,2 --force -o merged hub/task1 hub/task2
expect_exit 0 "$LORAHUB" compose -m cat -w 1,1 --force -o catted hub/task1 hub/task2
grep -q '"lora_alpha": 8' catted/adapter_config.json || fail "--force did not rewrite catted"
expect_exit 0 "$LORAHUB" compose --help
expect_out_contains "usage: lorahub compose"

# ---- bad inputs ----
bad 1 "hub/wide" -m cat -o x hub/task1 hub/wide
expect_err_contains "hub/task1"
expect_err_contains "32x32"
expect_err_contains "48x32"
bad 1 "needs equal ranks" -m linear -o x hub/task1 hub/r8
bad 2 "3 weights for 2 modules" -w 1,2,3 -o x hub/task1 hub/task2
bad 2 "1 weight for 2 modules" -w 1 -o x hub/task1 hub/task2
bad 2 "not a finite number" -w nan,1 -o x hub/task1 hub/task2
bad 2 "not a finite number" -w 1,inf -o x hub/task1 hub/task2
printf 'task1\tnan\ntask2\t1\n' >nan.tsv
bad 2 "not a finite number" --weights nan.tsv -o x hub/task1 hub/task2
printf 'task1: 1\n' >short.yaml
bad 2 "'hub/task2' has no weight" --weights short.yaml -o x hub/task1 hub/task2
printf 'task1: 1\ntask3: 1\n' >other.yaml
bad 2 "'task3' is not one of the modules" --weights other.yaml -o x hub/task1 hub/task2
printf '[1, 2, 3]\n' >three.json
bad 2 "3 weights for 2 modules" --weights three.json -o x hub/task1 hub/task2
bad 1 "no-such-module" -o x hub/task1 no-such-module
printf 'not a safetensors file' >junk.safetensors
bad 1 "junk.safetensors" -o x hub/task1 junk.safetensors
bad 1 "no-weights.yaml" --weights no-weights.yaml -o x hub/task1
bad 1 "already exists" -o merged hub/task1 hub/task2
bad 2 "unknown method 'average'" -m average -o x hub/task1
bad 2 "--rank applies to the svd methods" --rank 4 -o x hub/task1
bad 2 "--density applies" --density 0.5 -m svd -o x hub/task1
bad 2 "--density '0'" -m ties --density 0 -o x hub/task1
bad 2 "--seed applies to the dare methods" -m ties --seed 1 -o x hub/task1
bad 2 "--majority-sign 'most'" -m ties --majority-sign most -o x hub/task1
bad 2 "--dtype 'f64'" --dtype f64 -o x hub/task1
bad 2 "--peft: lorahub is not a PEFT method" --peft -o x hub/task1
bad 2 "no output directory" hub/task1
bad 2 "no modules given" -o x
bad 2 "unknown option '--frobnicate'" --frobnicate -o x hub/task1
bad 2 "option '--rank' needs a value" -m svd -o x hub/task1 --rank
snapshot
expect_exit 2 sh -c "printf 'hub/task1\n' | '$LORAHUB' compose --weights - -o x -"
expect_one_line_error
expect_err_contains "standard input cannot hold both"
unchanged "stdin twice"
# the merged output from before is untouched by the failed attempts
[ -s merged/adapter_model.safetensors ] || fail "merged lost"

# ---- GGUF: a llama.cpp adapter out (-o OUT.gguf --base), GGUF modules in ----
mkdir gbase
printf '{"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2}\n' >gbase/config.json
expect_exit 0 "$LORAHUB" compose -m cat -w 0.5,1 --base gbase -o c.gguf hub/task1 hub/task2
expect_out_contains "into c.gguf"
expect_exit 0 "$LORAHUB" compose -m cat -w 0.5,1 -o cdir hub/task1 hub/task2
expect_exit 0 "$LORAHUB" convert c.gguf cback
cmp cback/adapter_model.safetensors cdir/adapter_model.safetensors || fail "GGUF compose differs"
expect_exit 0 "$LORAHUB" convert hub/task1 t1.gguf --base gbase
expect_exit 0 "$LORAHUB" compose -m cat -w 0.5,1 -o cdir2 t1.gguf hub/task2
cmp cdir2/adapter_model.safetensors cdir/adapter_model.safetensors || fail "GGUF module differs"
bad 2 "a .gguf output needs the base model" -m cat -o c2.gguf hub/task1
bad 1 "qwen2.gguf: a GGUF adapter for architecture 'qwen2', but the base model is 'llama'" \
    -m cat --base gbase -o c3 "$TOP/tests/fixtures/gguf/qwen2.gguf" hub/task1
bad 1 "c.gguf' already exists" -m cat --base gbase -o c.gguf hub/task1
expect_exit 0 "$LORAHUB" compose -m cat --force --base gbase -o c.gguf hub/task1
