# The bookkeeping of the shell tests, sourced by each once $WORK is set:
# one line per check ("ok   NAME" or "FAIL NAME" with the last command's
# output), and the closing "N passed, N failed" that CI reads.
passed=0 failed=0

pass() {
    passed=$((passed + 1))
    echo "ok   $1"
}

# fail NAME: also the tails of what the last `run` kept.
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    [ -s "$WORK/stdout" ] && tail -n 12 "$WORK/stdout" | sed 's/^/     stdout: /'
    [ -s "$WORK/stderr" ] && tail -n 12 "$WORK/stderr" | sed 's/^/     stderr: /'
    return 0
}

# run CMD...: runs it, keeping stdout/stderr in $WORK and the status in $rc.
run() {
    "$@" >"$WORK/stdout" 2>"$WORK/stderr"
    rc=$?
}

# expect_ok NAME CMD...: exit status 0.
expect_ok() {
    local name=$1
    shift
    run "$@"
    if [ "$rc" -eq 0 ]; then pass "$name"; else fail "$name (exit $rc)"; fi
}

# check NAME CMD...: the command (a test or a shell function) succeeds; its
# output is not kept.
check() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

# summary: the closing line; the status says whether every check passed.
summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
