# lorahub tokenize: ids and pieces of texts (arguments or stdin lines) for a
# BPE tokenizer (the zoo base) and a Unigram one (Flan-T5); the expected ids
# come from the independent references (tests/fixtures/tokenizers/
# zoo-base.expected.json, flan-t5/cases.json from sentencepiece).
. "$TOP/tests/cli/lib.sh"
ZOO=$TOP/examples/zoo/base
T5=$TOP/tests/fixtures/tokenizers/flan-t5
cd "$TMP"

# BPE, no post_processor: nothing added. The ids are the reference's for
# the zoo tokenizer's snapshot (zoo-base.expected.json); the zoo base itself
# must round-trip through --decode, pieces and ids agreeing.
SNAP=$TOP/tests/fixtures/tokenizers/zoo-base.tokenizer.json
expect_exit 0 "$LORAHUB" tokenize --tokenizer "$SNAP" "Hello, world!" a ""
printf '72 333 108 111 44 264 269 108 100 33\n97\n\n' > want
cmp -s out want || { cat out; fail "zoo snapshot ids differ"; }
printf 'Hello, world!\na\n' | "$LORAHUB" tokenize --tokenizer "$SNAP" > out2
printf '72 333 108 111 44 264 269 108 100 33\n97\n' | cmp -s out2 - || { cat out2; fail "stdin lines differ"; }
expect_exit 0 "$LORAHUB" tokenize --tokenizer "$SNAP" --tokens "Hello, world!"
printf 'H el l o , \304\240w or l d !\n' | cmp -s out - || { cat out; fail "zoo pieces differ"; }
printf 'The quick brown fox.\ncaf\303\251  tabs\tand spaces \n' > texts
"$LORAHUB" tokenize --base "$ZOO" < texts > ids
[ "$(wc -l < ids)" -eq 2 ] || fail "want 2 lines of ids"
"$LORAHUB" tokenize --base "$ZOO" --decode < ids > back
cmp -s back texts || { cat back; fail "zoo base does not round-trip"; }
"$LORAHUB" tokenize --base "$ZOO" --tokens < texts > pieces
[ "$(head -n 1 pieces | wc -w)" -eq "$(head -n 1 ids | wc -w)" ] || fail "pieces and ids differ in number"

# A Llama-2-style BPE tokenizer: its template puts <s> (id 1) first; the
# other ids are the reference's (llama2-style.expected.json)
L2=$TOP/tests/fixtures/tokenizers/llama2-style.tokenizer.json
expect_exit 0 "$LORAHUB" tokenize --tokenizer "$L2" "Hello, world!" a
printf '1 259 323 385 269 262 275 349 549 269 268 36\n1 345\n' | cmp -s out - || { cat out; fail "llama2 ids"; }
expect_exit 0 "$LORAHUB" tokenize --tokenizer "$L2" --no-special a
printf '345\n' | cmp -s out - || { cat out; fail "llama2 --no-special"; }

# Unigram: special tokens matched, </s> appended
expect_exit 0 "$LORAHUB" tokenize --base "$T5" "Hello <extra_id_0> world" \
    "translate English to German: How old are you?" "Ｈｅｌｌｏ　Ｗｏｒｌｄ" "ﬁ ﬂ ﬀ ﬃ" "Hello "
cat > want <<'W'
8774 3 32099 296 1
13959 1566 12 2968 10 571 625 33 25 58 1
8774 1150 1
361 3 89 40 3 89 89 3 89 89 23 1
8774 3 1
W
cmp -s out want || { diff out want; fail "flan-t5 ids differ"; }
expect_exit 0 "$LORAHUB" tokenize --tokenizer "$T5/tokenizer.json" --no-special "Hello <extra_id_0> world" "a</s>b"
printf '8774 3 2 25666 834 23 26 834 632 3155 296\n3 9 2 87 7 3155 115\n' | cmp -s out - || { cat out; fail "--no-special"; }
expect_exit 0 "$LORAHUB" tokenize --base "$T5" --no-template "a</s>b"
printf '3 9 1 3 115\n' | cmp -s out - || { cat out; fail "--no-template"; }
expect_exit 0 "$LORAHUB" tokenize --base "$T5" --tokens "Hello <extra_id_0> world"
printf '\342\226\201Hello \342\226\201 <extra_id_0> \342\226\201world </s>\n' | cmp -s out - || { cat out; fail "pieces"; }

# decode: ids back to text, special tokens kept or skipped
expect_exit 0 "$LORAHUB" tokenize --base "$T5" --decode "8774 3 32099 296 1" "361,3,89,40"
printf 'Hello <extra_id_0> world</s>\nfi fl\n' | cmp -s out - || { cat out; fail "decode"; }
echo "8774 3 32099 296 1" | "$LORAHUB" tokenize --base "$T5" --decode --skip-special > out2
printf 'Hello  world\n' | cmp -s out2 - || { cat out2; fail "decode --skip-special"; }

# errors: one line, non-zero, nothing on stdout
expect_exit 2 "$LORAHUB" tokenize "x"
expect_err_contains "give one of --base DIR and --tokenizer FILE"
expect_exit 2 "$LORAHUB" tokenize --base "$T5" --decode --tokens 1
expect_exit 1 "$LORAHUB" tokenize --base "$TMP/nowhere" x
expect_one_line_error
expect_err_contains "$TMP/nowhere/tokenizer.json"
printf 'fine\nbad \377 byte\n' > bad.txt
set +e; "$LORAHUB" tokenize --base "$T5" < bad.txt > out 2> err; rc=$?; set -e
[ "$rc" -eq 1 ] || fail "invalid UTF-8 exited $rc, want 1"
[ "$(wc -l < err)" -eq 1 ] || fail "want one line on stderr"
grep -q "standard input line 2" err || { cat err; fail "line number missing"; }
grep -q "not valid UTF-8" err || { cat err; fail "reason missing"; }
expect_exit 1 "$LORAHUB" tokenize --base "$T5" --decode "1 two 3"
expect_one_line_error
expect_err_contains "is not a list of token ids"
