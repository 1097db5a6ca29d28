# The command table: --version, unknown commands, every command has a man page.
. "$TOP/tests/cli/lib.sh"
expect_exit 0 "$LORAHUB" --version
expect_out_contains "lorahub "
expect_exit 2 "$LORAHUB" no-such-command
expect_err_contains "'no-such-command' is not a lorahub command"
expect_exit 2 "$LORAHUB"
expect_exit 0 "$LORAHUB" --help
for c in $(sed -n 's/^   \([a-z-]*\) .*/\1/p' "$TMP/out"); do
    case $c in help|version) continue ;; esac
    [ -f "$TOP/man/lorahub-$c.1" ] || fail "command '$c' has no man/lorahub-$c.1"
done
