#!/usr/bin/env bash
# Vendors KaTeX (the npm package `katex`) for the search page: katex.min.js, katex.min.css,
# its LICENSE and the woff2 fonts (every browser the page supports reads woff2; the CSS's woff
# and ttf fallbacks are never fetched), into crates/mathrank-server/assets/katex/, which the
# binary embeds. Run it to move to another version, then run the page test
# (scripts/check-page.sh). Usage: scripts/vendor-katex.sh [VERSION]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version="${1:-0.19.1}"
dest=crates/mathrank-server/assets/katex
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "katex@$version" >/dev/null)
tar xzf "$work/katex-$version.tgz" -C "$work"
rm -rf "$dest"
mkdir -p "$dest/fonts"
cp "$work/package/dist/katex.min.js" "$work/package/dist/katex.min.css" "$work/package/LICENSE" "$dest/"
cp "$work"/package/dist/fonts/*.woff2 "$dest/fonts/"
echo "$version" >"$dest/VERSION"
echo "vendored KaTeX $version into $dest ($(du -sh "$dest" | cut -f1))"
