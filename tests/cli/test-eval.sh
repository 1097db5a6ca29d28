# lorahub eval: the man page's examples (run on the native fixture model and
# the toy exec backend), the loss/token definitions through the CLI, ICL,
# JSON, the exec backend (tests/tools/test_backend), and bad inputs.
. "$TOP/tests/cli/lib.sh"
FIX="$TOP/tests/fixtures/native"
cd "$TMP"
ln -s "$FIX/a" tinyllama
ln -s "$FIX/a-lora" merged
cp "$FIX/examples.jsonl" task.jsonl
cp "$TOP/examples/backends/toy_backend.py" .
ln -s "$TOP/examples" examples  # the bundled T5 zoo example

# ---- the EXAMPLES of man/lorahub-eval.1, run as written ----
sed -n '/^\.Sh EXAMPLES/,/^\.Sh SEE/p' "$TOP/man/lorahub-eval.1" |
    sed -n '/^\.Bd -literal/,/^\.Ed/p' | grep -v '^\.' |
    sed -e 's/\\e$/\\/' -e 's/\\e/\\/g' >ex.sh
lorahub() { "$LORAHUB" "$@"; }
n=$(grep -c '^lorahub' ex.sh)
[ "$n" -eq 6 ] || fail "expected 6 examples in the man page, found $n"
. ./ex.sh >ex.out 2>ex.err || { cat ex.err >&2; fail "a man page example failed"; }
grep -q '^loss ' ex.out || fail "no loss line: $(cat ex.out)"
grep -q '"accuracy":' ex.out || fail "no JSON accuracy: $(cat ex.out)"
# the toy backend's example: a loss, no token count (exec does not count);
# the T5 zoo's two: loss, tokens and accuracy each
[ "$(grep -c '^loss ' ex.out)" -eq 5 ] && [ "$(grep -c '^tokens ' ex.out)" -eq 4 ] &&
    [ "$(grep -c '^accuracy ' ex.out)" -eq 2 ] ||
    fail "toy backend example: $(cat ex.out)"

# ---- loss and token counts ----
jget() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$TMP/out"; }
expect_exit 0 "$LORAHUB" eval --base tinyllama --examples task.jsonl --json
base_loss=$(jget loss); tokens=$(jget tokens); n=$(jget n)
[ "$(jget accuracy)" = null ] || fail "accuracy computed without exact-match: $(cat out)"
# 5 examples, output bytes 1+6+3+12+11 = 33 (byte-level tokenizer) + 5 EOS
[ "$tokens" -eq 38 ] || fail "tokens $tokens, want 38"
[ "$n" -eq 5 ] || fail "n $n, want 5"
expect_exit 0 "$LORAHUB" eval --base tinyllama --examples task.jsonl --json --no-eos
[ "$(jget tokens)" -eq 33 ] || fail "--no-eos: tokens $(jget tokens), want 33"
# without BOS the one empty input leaves its first output token unscored
expect_exit 0 "$LORAHUB" eval --base tinyllama --examples task.jsonl --json --no-bos
[ "$(jget tokens)" -eq 37 ] || fail "--no-bos: tokens $(jget tokens), want 37"
expect_exit 0 "$LORAHUB" eval --base tinyllama --adapter merged --examples task.jsonl --json --threads 1
ad_loss=$(jget loss)
[ "$ad_loss" != "$base_loss" ] || fail "the adapter did not change the loss"
# an option given again replaces the earlier value
expect_exit 0 "$LORAHUB" eval --base nothere --base tinyllama --threads 1 --threads 2 --no-eos \
    --no-eos --no-eos --no-eos --no-eos --no-eos --no-eos --no-eos --no-eos --examples task.jsonl
expect_out_contains "tokens    33"
expect_exit 0 "$LORAHUB" eval --base tinyllama --examples task.jsonl
expect_out_contains "tokens    38"
expect_out_contains "examples  5"

# ---- exact match and ICL ----
expect_exit 0 "$LORAHUB" eval --base tinyllama --examples task.jsonl --metric both --max-new-tokens 4 --json -v
[ "$(jget n)" -eq 5 ] && [ "$(jget loss)" = "$base_loss" ] || fail "both: $(cat out)"
grep -q 'peak memory (maxrss)' err || fail "-v lacks the peak memory: $(cat err)"
[ "$(grep -c 'example [0-9]*: \(match\|miss\)' err)" -eq 5 ] || fail "-v lacks per-example lines"
expect_exit 0 "$LORAHUB" eval --base tinyllama --examples task.jsonl --icl 2 --json
[ "$(jget n)" -eq 3 ] || fail "--icl 2 from the same file must evaluate 3: $(cat out)"
head -n 2 task.jsonl >demo.jsonl
expect_exit 0 "$LORAHUB" eval --base tinyllama --examples task.jsonl --icl 2 --icl-examples demo.jsonl --json
[ "$(jget n)" -eq 5 ] || fail "--icl-examples must evaluate all 5: $(cat out)"
[ "$(jget loss)" != "$base_loss" ] || fail "ICL demonstrations did not change the loss"

# ---- the exec backend: test_backend's loss is ||delta - T||^2 / ||T||^2 ----
TB="$TOP/$O/tests/tools/test_backend --target $FIX/a-lora=1"
expect_exit 0 "$LORAHUB" eval --backend-cmd "$TB" --adapter merged --examples task.jsonl --json
# (the scale folded into B as exec writes it rounds: not exactly 0)
awk -v l="$(jget loss)" 'BEGIN { exit !(l >= 0 && l < 1e-12) }' && [ "$(jget tokens)" = null ] &&
    [ "$(jget n)" -eq 5 ] || fail "exec, the target itself: $(cat out)"
expect_exit 0 "$LORAHUB" eval --backend exec --backend-cmd "$TB" --backend-timeout 30 \
    --examples task.jsonl
expect_out_contains "loss      1.000000"
grep -q '^tokens' out && fail "exec backend printed a token count: $(cat out)"
expect_out_contains "examples  5"
# --base and --backend-cmd together: native unless --backend says otherwise
expect_exit 0 "$LORAHUB" eval --base tinyllama --backend-cmd "$TB" --examples task.jsonl --json
[ "$(jget loss)" = "$base_loss" ] || fail "--base with --backend-cmd: $(cat out)"
expect_exit 0 "$LORAHUB" eval --backend exec --base tinyllama --backend-cmd "$TB" --examples task.jsonl --json
[ "$(jget loss)" = 1 ] || fail "--backend exec: $(cat out)"
# exact match through the backend's generate (test_backend upper-cases the input)
printf '{"input":"abc","output":"ABC"}\n{"input":"x","output":"y"}\n' >upper.jsonl
expect_exit 0 "$LORAHUB" eval --backend-cmd "$TB --generate" --examples upper.jsonl --metric both --json
[ "$(jget accuracy)" = 0.5 ] && [ "$(jget loss)" = 1 ] || fail "exec exact match: $(cat out)"
# ICL examples are written for the child, which must see the prompts
expect_exit 0 "$LORAHUB" eval --backend-cmd "$TB --generate" --examples upper.jsonl --icl 1 \
    --icl-examples upper.jsonl --metric exact-match -v
grep -q 'example 1: miss: got "ABCABC' err || fail "ICL through exec: $(cat err)"

# ---- bad input: one line on stderr, nothing on stdout ----
bad() { want=$1 text=$2; shift 2
    expect_exit "$want" "$LORAHUB" eval "$@"; expect_one_line_error; expect_err_contains "$text"; }
bad 2 "--base DIR is required" --examples task.jsonl
bad 2 "--examples FILE is required" --base tinyllama
bad 2 "--metric" --base tinyllama --examples task.jsonl --metric bleu
bad 2 "--icl 5" --base tinyllama --examples task.jsonl --icl 5
bad 2 "--icl 3" --base tinyllama --examples task.jsonl --icl 3 --icl-examples demo.jsonl
bad 2 "--threads" --base tinyllama --examples task.jsonl --threads 0
bad 2 "unknown option" --base tinyllama --examples task.jsonl --frobnicate
bad 2 "option '--examples' needs a value" --base tinyllama --examples
bad 2 "the exec backend needs --backend-cmd CMD" --backend exec --base tinyllama --examples task.jsonl
bad 2 "no backend named 'cuda'" --backend cuda --base tinyllama --examples task.jsonl
bad 2 "--backend-timeout" --backend-cmd "$TB" --backend-timeout -1 --examples task.jsonl
bad 1 "out of tea" --backend-cmd "$TB --error 'out of tea'" --examples task.jsonl
expect_err_contains "exec backend '$TOP/$O/tests/tools/test_backend"
bad 1 "exec backend '/nonexistent/backend 2>/dev/null': exited with status 127" \
    --backend-cmd "/nonexistent/backend 2>/dev/null" --examples task.jsonl
# a NaN loss is an error, not a number printed as "nan"
cat >nan.sh <<'EOF'
while IFS= read -r req; do
  case $req in
  *'"hello"'*) echo '{"ok":true,"protocol":1,"name":"nan"}' ;;
  *'"score"'*) echo '{"ok":true,"loss":[null]}' ;;
  *) echo '{"ok":true}'; exit 0 ;;
  esac
done
EOF
bad 1 "exec backend 'sh nan.sh' (nan): the loss is NaN" --backend-cmd "sh nan.sh" --examples task.jsonl --json
bad 1 "'generate' is not supported" --backend-cmd "$TB" --examples task.jsonl --metric exact-match
bad 1 "nothere" --base nothere --examples task.jsonl
bad 1 "tokenizer.json" --base "$FIX/b" --examples task.jsonl
mkdir badcfg && sed 's/"silu"/"gelu"/' "$FIX/a/config.json" >badcfg/config.json
bad 1 "hidden_act" --base badcfg --examples task.jsonl
bad 1 "b-lora" --base tinyllama --adapter "$FIX/b-lora" --examples task.jsonl
printf '{"input":"x"}\n' >broken.jsonl
bad 1 "broken.jsonl" --base tinyllama --examples broken.jsonl
exit 0
