#!/bin/sh
# The time and size of `escalade backup`, `restore --check` and `restore` on a generated store.
#
#   daemon/benches/backup.sh [ISSUES] [PHOTOS] [DIR]
#
# Writes a history of ISSUES example-city issues (default 100000) under DIR (default
# /tmp/escalade-backup-bench, emptied first), gives the first PHOTOS issues (default 1000) a
# photo of 100 KiB each (a PNG signature and random bytes, under its SHA-256 as the daemon
# stores it), then times each command with /usr/bin/time. Uses the release binary
# (`cargo build --release -p escalade` first) and the `sqlite3` shell. Touches nothing outside
# DIR, holds at most two copies of the store at once (the live one is removed before the
# restore), and stops by itself; remove DIR after.
set -eu

issues=${1:-100000}
photos=${2:-1000}
dir=${3:-/tmp/escalade-backup-bench}
bin=$(dirname "$0")/../../target/release/escalade
[ -x "$bin" ] || { echo "build the release binary first: cargo build --release -p escalade" >&2; exit 2; }

rm -rf "$dir"
mkdir -p "$dir/live/photos"
store="$dir/live/escalade.sqlite"
"$bin" generate-history --rules "$(dirname "$0")/../../examples/city" --out "$store" --issues "$issues"

i=1
while [ "$i" -le "$photos" ]; do
    f="$dir/photo.tmp"
    printf '\211PNG\r\n\032\n' > "$f"
    head -c 102400 /dev/urandom >> "$f"
    h=$(sha256sum "$f" | cut -c1-64)
    mkdir -p "$dir/live/photos/$(echo "$h" | cut -c1-2)"
    mv "$f" "$dir/live/photos/$(echo "$h" | cut -c1-2)/$h"
    echo "UPDATE issues SET body = json_set(body, '\$.photos', json_array('$h')) WHERE id = '$i';"
    i=$((i + 1))
done > "$dir/photos.sql"
sqlite3 "$store" < "$dir/photos.sql"
sqlite3 "$store" 'PRAGMA wal_checkpoint(TRUNCATE);' > /dev/null

echo "store: $(stat -c %s "$store") bytes, photos: $(du -sb "$dir/live/photos" | cut -f1) bytes"
t='%e s elapsed, %U s user, %S s system, %M kB peak RSS'
ESCALADE_STATE_DIR="$dir/live" /usr/bin/time -f "backup: $t" "$bin" backup --to "$dir/store.backup"
echo "backup file: $(stat -c %s "$dir/store.backup") bytes"
/usr/bin/time -f "restore --check: $t" "$bin" restore --check --from "$dir/store.backup"
# The live store goes before the restore, so that no more than two copies are ever on disk.
rm -rf "$dir/live"
ESCALADE_STATE_DIR="$dir/restored" /usr/bin/time -f "restore: $t" "$bin" restore --from "$dir/store.backup"
echo "restored store: $(stat -c %s "$dir/restored/escalade.sqlite") bytes"
