#!/bin/sh
# Run every benchmark program built into $O/bench/ (make bench sets O).
# Each prints its figures with ratios against limits measured in the same run.
O=${O:-build}
status=0
for b in "$O"/bench/*; do
    [ -x "$b" ] || continue
    echo "== $b"
    "$b" || status=1
done
exit $status
