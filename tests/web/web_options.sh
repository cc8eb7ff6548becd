#!/bin/sh
# rtdaq-web refuses what it must refuse before it serves anything: a listener that is not
# loopback without TLS and a token, a bad --listen, a half TLS configuration, an unknown
# option; and --check-config passes on the defaults. Usage: web_options.sh path/to/rtdaq-web
set -u
web="$1"
fail=0
expect() { # expect RC WORDS -- ARGS...: exit status RC and WORDS in stderr
    want="$1"; words="$2"; shift 3
    err=$("$web" "$@" 2>&1 >/dev/null); rc=$?
    if [ "$rc" -ne "$want" ] || ! printf '%s' "$err" | grep -q -- "$words"; then
        echo "FAIL rtdaq-web $*: rc $rc (want $want), stderr: $err"; fail=1
    else
        echo "ok   rtdaq-web $*: rc $rc, '$words'"
    fi
}
expect 2 "needs --tls-cert" -- --listen 0.0.0.0:8080
expect 2 "needs --tls-cert" -- --listen 192.168.1.10:8080 --token-file /dev/null
expect 2 "want ADDR:PORT" -- --listen 8080
expect 2 "want an integer" -- --listen 127.0.0.1:70000
expect 2 "go together" -- --tls-cert /dev/null
expect 2 "want a CPU list" -- --cpus 3-1
expect 2 "unrecognized" -- --no-such-option
out=$("$web" --check-config 2>&1); rc=$?
if [ "$rc" -ne 0 ] || [ "$out" != "config ok" ]; then
    echo "FAIL rtdaq-web --check-config: rc $rc: $out"; fail=1
else
    echo "ok   rtdaq-web --check-config"
fi
exit $fail
