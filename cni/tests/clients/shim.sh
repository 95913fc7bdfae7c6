# Body of the logging shim (the test writes `#!/bin/sh`, REAL=<plugin binary> and LOG=<log file>
# above it and names the file like the plugin). It runs the real plugin with the same
# environment, stdin and arguments, appends one record to $LOG (under flock: clients call
# plugins concurrently) and passes the plugin's stdout and exit code through.
in=$(cat)
out=$(printf '%s' "$in" | "$REAL" "$@")
rc=$?
rec=$(
    echo "@@ begin $(basename "$0") $$"
    env | grep '^CNI_' | sort | sed 's/^/env /'
    printf 'stdin %s\n' "$(printf '%s' "$in" | tr '\n' ' ')"
    printf 'stdout %s\n' "$(printf '%s' "$out" | tr '\n' ' ')"
    echo "rc $rc"
    echo "@@ end"
)
flock "$LOG.lock" sh -c 'printf "%s\n" "$1" >> "$2"' shim "$rec" "$LOG"
printf '%s' "$out"
exit $rc
