#!/bin/sh
# An invalid configuration is refused before anything starts, with a message naming the key.
# Usage: bad_config.sh PROGRAM [ARGS...]
set -u
# Only the file under test: no RTDAQ_* variable (CI sets RTDAQ_INSTANCE) may override it.
for v in $(env | sed -n 's/^\(RTDAQ_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
f=$(mktemp)
trap 'rm -f "$f"' EXIT
prog="$*"
fail=0
for case in "[acq]\nworkrs = 2\n|workrs" "[proc]\nworkrs = 2\n|workrs" "[ctl]\nworkrs = 2\n|workrs" \
            "[ctl]\ninterval-ms = 5\n|interval" "[proc]\nworkers = many\n|workers" \
            "[acq]\noverflow = sometimes\n|overflow" "[run]\nrate = -3\n|rate" \
            "[rtdaq]\ninstance = no/slash\n|instance"; do
    text=${case%|*}; want=${case#*|}
    printf '%b' "$text" > "$f"
    out=$($prog --config "$f" --check-config 2>&1); rc=$?
    sect=$(printf '%b' "$text" | head -1)
    case "$prog" in
        *rtdaq-acq*) [ "$sect" = "[acq]" ] || [ "$sect" = "[rtdaq]" ] || continue ;;
        *rtdaq-proc*) [ "$sect" = "[proc]" ] || [ "$sect" = "[rtdaq]" ] || continue ;;
        *rtdaq-ctl*) [ "$sect" = "[ctl]" ] || [ "$sect" = "[rtdaq]" ] || continue ;;
        *) [ "$sect" = "[run]" ] || continue ;;
    esac
    if [ $rc -eq 0 ] || ! printf '%s' "$out" | grep -q -- "$want"; then
        echo "FAIL: $prog accepted or did not name '$want' for: $text (rc=$rc): $out"
        fail=1
    else
        echo "ok: $prog: $(printf '%s' "$out" | head -1)"
    fi
done
exit $fail
