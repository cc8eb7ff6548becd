#!/bin/sh
# Every C/CUDA source tracked by git is formatted with the repository's .clang-format.
# Exit 0 pass, 1 fail, 77 skip (clang-format or git missing, or not a git checkout).
set -u
cd "$1" || exit 1
command -v clang-format >/dev/null 2>&1 || { echo "skip: clang-format not installed"; exit 77; }
files=$(git ls-files '*.c' '*.h' '*.cu' '*.cuh' 2>/dev/null) || { echo "skip: not a git checkout"; exit 77; }
[ -n "$files" ] || { echo "skip: no sources listed by git"; exit 77; }
out=$(echo "$files" | xargs clang-format --dry-run 2>&1 | grep 'warning:' | cut -d: -f1 | sort | uniq -c)
if [ -n "$out" ]; then
    printf 'not clang-formatted (clang-format -i FILE):\n%s\n' "$out"
    exit 1
fi
echo "all sources formatted"
