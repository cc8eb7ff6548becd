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

# TLS and the bearer token, on loopback (a token file makes every request need it).
if command -v openssl >/dev/null 2>&1 && command -v curl >/dev/null 2>&1; then
    dir=$(mktemp -d)
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
    echo "0123456789abcdef-test-token" > "$dir/token"
    "$web" --instance "webopts$$" --listen 127.0.0.1:0 --tls-cert "$dir/cert.pem" \
        --tls-key "$dir/key.pem" --token-file "$dir/token" > "$dir/out" 2>"$dir/err" &
    pid=$!
    i=0
    while [ $i -lt 50 ] && ! grep -q listening "$dir/out"; do sleep 0.1; i=$((i + 1)); done
    port=$(sed -n 's|.*https://127.0.0.1:\([0-9]*\)/.*|\1|p' "$dir/out")
    url="https://127.0.0.1:$port/api/v1/web"
    no=$(curl -sk -o /dev/null -w '%{http_code}' "$url")
    yes=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer 0123456789abcdef-test-token" "$url")
    wrong=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer 0123456789abcdef-test-tokex" "$url")
    plain=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/v1/web")
    if [ -n "$port" ] && [ "$no" = 401 ] && [ "$yes" = 200 ] && [ "$wrong" = 401 ] && [ "$plain" != 200 ]; then
        echo "ok   TLS + token: no token $no, token $yes, wrong token $wrong, plain HTTP $plain"
    else
        echo "FAIL TLS + token on port '$port': no token $no (401), token $yes (200), wrong $wrong (401), plain $plain (not 200)"
        cat "$dir/out" "$dir/err"
        fail=1
    fi
    kill "$pid"
    wait "$pid"
    rc=$?
    [ $rc -eq 0 ] || { echo "FAIL rtdaq-web exited $rc on SIGTERM"; fail=1; }
    rm -rf "$dir"
else
    echo "skip TLS check: needs openssl and curl"
fi
exit $fail
