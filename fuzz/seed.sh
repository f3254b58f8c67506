#!/bin/sh
# Writes the starting corpus of each fuzz target under fuzz/corpus/TARGET (kept out of git):
# the example organisation's files for the loader, valid requests for the HTTP targets, the
# documented cron forms. Run from the repository root: sh fuzz/seed.sh
set -eu
cd "$(dirname "$0")"
c=corpus

# rule_dir: the first line names the file the rest replaces.
mkdir -p $c/rule_dir
(cd ../examples/city && find . -type f ! -path './tests/*' | sed 's|^\./||') | while read -r f; do
    { printf '%s\n' "$f"; cat "../examples/city/$f"; } > "$c/rule_dir/$(echo "$f" | tr / _)"
done

mkdir -p $c/issue_json
printf '%s' '{"category": "noise", "unit": "g-0001", "description": "夜间施工噪声", "reporter": "p-g-0001"}' > $c/issue_json/report
printf '%s' '{"category": "road_damage", "unit": "g-0002", "description": "路面塌陷", "priority": "urgent", "address": "花园路 1 号", "location": {"lat": 34.77, "lon": 113.68}}' > $c/issue_json/full
printf '%s' '{"category": "garbage", "unit": "c-001", "description": "bins", "photos": ["0d6603ca0d6603ca0d6603ca0d6603ca0d6603ca0d6603ca0d6603ca0d6603ca"]}' > $c/issue_json/photos

# multipart: the first byte chooses a report (0) or an event on a fresh issue (1).
mkdir -p $c/multipart
part() { # name, content type, body (text)
    printf -- '--fuzz\r\nContent-Disposition: form-data; name="%s"\r\nContent-Type: %s\r\n\r\n%s\r\n' "$1" "$2" "$3"
}
photo() { # a 1x1 PNG
    printf -- '--fuzz\r\nContent-Disposition: form-data; name="photo"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    printf '\211PNG\r\n\032\n\000\000\000\rIHDR\000\000\000\001\000\000\000\001\010\006\000\000\000\037\025\304\211\000\000\000\rIDATx\234c\370\317\300\360\037\000\005\000\001\377\211\231=\035\000\000\000\000IEND\256B`\202'
    printf '\r\n'
}
{ printf '\000'; part issue application/json '{"category": "noise", "unit": "g-0001", "description": "loud"}'; photo; printf -- '--fuzz--\r\n'; } > $c/multipart/report
{ printf '\000'; part issue application/json '{"category": "noise", "unit": "g-0001", "description": "loud"}'; printf -- '--fuzz--\r\n'; } > $c/multipart/report_no_photo
{ printf '\001'; part event application/json '{"event": "resolved", "note": "fixed"}'; photo; printf -- '--fuzz--\r\n'; } > $c/multipart/resolved

# events: the first byte chooses the category; bodies are separated by 0xFF bytes.
mkdir -p $c/events
sep=$(printf '\377')
ev() { # name, category selector (octal), bodies...
    name=$1 sel=$2; shift 2
    { printf "\\$sel"; first=1; for b in "$@"; do [ $first = 1 ] || printf '%s' "$sep"; first=0; printf '%s' "$b"; done; } > "$c/events/$name"
}
ev lifecycle 000 '{"event": "acknowledged"}' '{"event": "progress", "note": "on site"}' '{"event": "resolved", "note": "done"}' '{"event": "confirmed"}' '{"event": "evaluated", "rating": 5, "comment": "good"}'
ev returned 001 '{"event": "returned", "reason": "not ours"}' '{"event": "reassigned", "department": "water"}' '{"event": "acknowledged"}'
ev extension 001 '{"event": "acknowledged"}' '{"event": "extension_requested", "duration": "2d", "reason": "parts"}' '{"event": "request_decided", "request": "extension", "granted": true}'
ev suspension 002 '{"event": "acknowledged"}' '{"event": "suspension_requested", "reason": "wait"}' '{"event": "request_decided", "request": "suspension", "granted": true, "note": "ok"}' '{"event": "resumed", "note": "back"}'
ev rejected 000 '{"event": "acknowledged"}' '{"event": "resolved", "note": "done"}' '{"event": "rejected", "reason": "still loud"}' '{"event": "closed_at_grid"}'
ev misc 003 '{"event": "commented", "text": "crew at 14:00"}' '{"event": "duplicate", "original": "1"}' '{"event": "report_rated", "verdict": "valid", "comment": "x"}'

mkdir -p $c/cron
i=0
for e in '0 8 * * Mon-Fri' '0 9 * * Mon' '*/15 9-17 * * *' '30 2 * * Sun' '0 0 1 * *' '0 12 29 2 *' '5,35 8-18/2 * Jan-Jun,Oct *' '0 0 * * 1' '@daily' '0 0 0 * * *' '0 8 1 * Mon'; do
    printf '%s' "$e" > $c/cron/$i; i=$((i + 1))
done
echo "seeded $(find $c -type f | wc -l) inputs under fuzz/$c"
