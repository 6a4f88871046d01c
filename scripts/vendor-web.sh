#!/usr/bin/env bash
# Fetch the console's vendored web assets again from the npm registry (npm pack) and check
# each tarball and each file against the hashes in src/yugong/web/static/vendor/VENDOR.md and
# against the committed copy, so anyone can reproduce them.
#   scripts/vendor-web.sh            check (a vendored file that is missing is written)
#   scripts/vendor-web.sh --update   write the fetched files and print their sha256, for an
#                                    upgrade (then put those in VENDOR.md)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/src/yugong/web/static/vendor"
manifest="$vendor/VENDOR.md"
update=0
case "${1:-}" in
  "") ;;
  --update) update=1 ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac
for tool in npm node tar sha256sum; do
  command -v "$tool" >/dev/null || { echo "vendor-web: $tool is needed" >&2; exit 2; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Rows of the files table: | package | version | source | vendored as | sha256 | licence |
files="$(awk -F'|' '/^\|[^|]*\| *[0-9]+\.[0-9]+\.[0-9]+[^|]* *\|/ {
  gsub(/[ `]/, ""); print $2, $3, $4, $5, $6 }' "$manifest")"
# Rows of the tarballs table: | name-version.tgz | sha512-... |
tarballs="$(awk -F'|' '/^\| *[^|]*\.tgz *\|/ { gsub(/[ `]/, ""); print $2, $3 }' "$manifest")"
[ -n "$files" ] || { echo "vendor-web: no files listed in $manifest" >&2; exit 2; }

fail=0
while read -r pkg version source dest sum; do
  dir="$tmp/$pkg@$version"
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    # npm checks the tarball against the registry's own integrity record as it downloads.
    tgz="$(cd "$dir" && npm pack --silent "$pkg@$version" 2>/dev/null | tail -n 1)"
    integrity="$(node -e 'const c=require("crypto"),f=require("fs");
      process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$dir/$tgz")"
    want="$(awk -v t="$tgz" '$1 == t { print $2 }' <<<"$tarballs")"
    if [ "$update" = 1 ]; then
      echo "$tgz $integrity"
    elif [ "$want" != "$integrity" ]; then
      echo "MISMATCH $tgz: integrity $integrity, VENDOR.md says ${want:-nothing}" >&2
      fail=1
    else
      echo "ok       $tgz"
    fi
    tar -xzf "$dir/$tgz" -C "$dir"
  fi
  fetched="$dir/package/$source"
  [ -f "$fetched" ] || { echo "MISSING $pkg@$version has no $source" >&2; fail=1; continue; }
  got="$(sha256sum "$fetched" | cut -d' ' -f1)"
  if [ "$update" = 1 ]; then
    cp "$fetched" "$vendor/$dest"
    echo "$dest $got"
    continue
  fi
  if [ "$got" != "$sum" ]; then
    echo "MISMATCH $pkg@$version $source: sha256 $got, VENDOR.md says $sum" >&2
    fail=1
  elif [ ! -f "$vendor/$dest" ]; then
    cp "$fetched" "$vendor/$dest"
    echo "written  $dest"
  elif ! cmp -s "$fetched" "$vendor/$dest"; then
    echo "MISMATCH $dest differs from $pkg@$version $source" >&2
    fail=1
  else
    echo "ok       $dest ($pkg@$version $source)"
  fi
done <<<"$files"
exit "$fail"
