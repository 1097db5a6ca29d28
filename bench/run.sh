#!/bin/sh
# Run every benchmark program built into $O/bench/ (make bench sets O).
# Each prints its figures with ratios against limits measured in the same run.
# bench/llamacpp: scoring tokens/s of native, --backend llamacpp and llama-perplexity.
# bench/server: lorahub adapt --backend server, one llama-server of 2 threads vs two of 1 thread.
# bench/json: JSON readers (ours, libyaml, jansson, cJSON) on a generated Llama-3-sized tokenizer.json.
O=${O:-build}
status=0
for b in "$O"/bench/*; do
    [ -x "$b" ] || continue
    echo "== $b"
    "$b" || status=1
done
exit $status
