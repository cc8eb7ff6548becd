#!/bin/sh
# systemd-analyze verify on every unit, configured against this build's binaries.
# A template is verified through an instance (rtdaq-proc@1.service), as systemd would load it.
# Exit 0 pass, 1 fail, 77 skip (no systemd-analyze).
set -u
src="$1"
command -v systemd-analyze >/dev/null 2>&1 || { echo "skip: systemd-analyze not installed"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$src"/*.service "$src"/rtdaq.target "$dir"/
ln -s rtdaq-proc@.service "$dir/rtdaq-proc@1.service"
cd "$dir" || exit 1
out=$(systemd-analyze verify ./rtdaq-acq.service ./rtdaq-ctl.service ./rtdaq-proc@1.service ./rtdaq.target 2>&1)
rc=$?
# Complaints about the host's own units are not ours; anything naming our files is.
ours=$(printf '%s\n' "$out" | grep -E 'rtdaq' || true)
if [ $rc -ne 0 ] || [ -n "$ours" ]; then
    printf 'systemd-analyze verify failed (rc=%s):\n%s\n' "$rc" "$out"
    exit 1
fi
for u in rtdaq-acq.service rtdaq-ctl.service rtdaq-proc@.service; do
    for key in Type=notify WatchdogSec= Restart=on-failure LimitMEMLOCK=infinity RemoveIPC=no; do
        grep -q "^$key" "$u" || { echo "$u lacks $key"; exit 1; }
    done
    if grep -q '^DynamicUser=yes' "$u"; then echo "$u uses DynamicUser= (removes IPC)"; exit 1; fi
done
echo "units verified"
