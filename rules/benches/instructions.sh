#!/usr/bin/env bash
# Instructions per `RuleSet::decide` call for each named decide benchmark, counted by callgrind.
# Unlike wall-clock time, the count repeats run after run on a busy machine.
#
#   cargo bench -p escalade-rules --bench decide --no-run
#   rules/benches/instructions.sh 'decide_yaml/illegal_construction$' 'decide_rhai/noise$'
set -euo pipefail
cd "$(dirname "$0")/.."
bench=$(ls -t ../target/release/deps/decide-* | grep -v '\.d$' | head -n 1)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for id in "$@"; do
  valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*RuleSet*decide*' \
    "$bench" --bench --profile-time 1 "$id" >/dev/null 2>&1
  python3 - "$out" "$id" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().split("\n")
names = {}
for l in lines:
    m = re.match(r"c?fn=\((\d+)\) (.*)", l)
    if m:
        names[m.group(1)] = m.group(2)
decide = {k for k, v in names.items() if re.search(r"RuleSet>::decide$", v)}
calls = ir = 0
for i, l in enumerate(lines):
    m = re.match(r"cfn=\((\d+)\)", l)
    if m and m.group(1) in decide and lines[i + 1].startswith("calls="):
        calls += int(lines[i + 1].split("=")[1].split()[0])
        ir += int(lines[i + 2].split()[1])
print(f"{sys.argv[2]}: {ir // max(calls, 1)} instructions per decision ({calls} calls)")
PY
done
