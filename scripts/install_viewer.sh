#!/usr/bin/env bash
# Install the OHIF viewer's prebuilt dist/ into viewer/node_modules/@ohif/app (served at /viewer/).
#
# The version and the registry's sha512 integrity are pinned in viewer/package.json ("ohif").
# Why not `npm ci`: @ohif/app's published package.json depends on packages that do not resolve
# on the registry (e.g. @ohif/i18n@3.13.2: ETARGET), and the server needs only the built dist/
# (no dependency is used at run time). So the one tarball is fetched with `npm pack`, checked
# against the pinned integrity, and unpacked. About 50 MB download, 204 MB on disk, seconds.
# Idempotent: does nothing when the pinned version is already there. Needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=viewer/node_modules/@ohif/app
read -r VERSION INTEGRITY < <(node -e '
  const o = require("./viewer/package.json").ohif; console.log(o.version, o.integrity)')

if [ -f "$DEST/dist/index.html" ] && [ "$(node -p "require('./$DEST/package.json').version" 2>/dev/null)" = "$VERSION" ]; then
  echo "OHIF viewer $VERSION already installed in $DEST"
  exit 0
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "fetching @ohif/app@$VERSION ..."
(cd "$TMP" && npm pack "@ohif/app@$VERSION" --silent > /dev/null)
TARBALL=$(ls "$TMP"/ohif-app-*.tgz)
ACTUAL="sha512-$(openssl dgst -sha512 -binary "$TARBALL" | base64 -w0)"
if [ "$ACTUAL" != "$INTEGRITY" ]; then
  echo "error: $TARBALL does not match the integrity pinned in viewer/package.json" >&2
  exit 1
fi
mkdir -p "$TMP/x"
tar xzf "$TARBALL" -C "$TMP/x"
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$TMP/x/package" "$DEST"
echo "OHIF viewer $VERSION installed in $DEST ($(du -sh "$DEST" | cut -f1)); restart radcommons serve and open /viewer/"
