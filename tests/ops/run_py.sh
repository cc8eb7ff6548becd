#!/bin/sh
# Run a Python test with an interpreter that imports the modules it needs.
# Debian's /usr/bin/python3 has python3-zmq; another python3 may come first on PATH.
# Usage: run_py.sh "mod1 mod2" script.py args...   Exit 77 (skip) when none can.
mods="$1"; shift
imports=$(printf 'import %s;' $mods)
for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c "$imports" 2>/dev/null; then
        exec "$py" "$@"
    fi
done
echo "skip: no python3 interpreter imports: $mods (Debian: apt-get install python3-zmq)"
exit 77
