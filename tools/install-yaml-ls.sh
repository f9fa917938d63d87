#!/usr/bin/env bash
# Install yaml-language-server (pinned 1.x) into .tools/yaml-ls/ at the repo root.
#
# Idempotent: if the pinned version is already installed it exits 0 and prints
# nothing.  Used by tests/test_editor_schema.py, and usable by hand:
#
#     tools/install-yaml-ls.sh
#     node .tools/yaml-ls/node_modules/yaml-language-server/bin/yaml-language-server --stdio
#
# yaml-language-server 2.x needs Node >= 22.13; 1.x runs on Node 20, so we pin
# the newest 1.x.  Override with YAML_LS_VERSION=... if you really need to.
set -euo pipefail

VERSION="${YAML_LS_VERSION:-1.25.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.tools/yaml-ls"
PKG_JSON="$DEST/node_modules/yaml-language-server/package.json"
BIN="$DEST/node_modules/yaml-language-server/bin/yaml-language-server"

installed_version() {
    [ -f "$PKG_JSON" ] && [ -f "$BIN" ] || return 1
    node -p "require(process.argv[1]).version" "$PKG_JSON" 2>/dev/null
}

if ! command -v node >/dev/null 2>&1; then
    echo "install-yaml-ls: 'node' not found on PATH (Node.js 20+ is needed)" >&2
    exit 127
fi

# Fast path: already installed at the pinned version -> silent success.
if [ "$(installed_version || true)" = "$VERSION" ]; then
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "install-yaml-ls: 'npm' not found on PATH" >&2
    exit 127
fi

mkdir -p "$ROOT/.tools"

# Serialise concurrent installs (e.g. pytest-xdist workers).
LOCK="$ROOT/.tools/.yaml-ls.lock"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK"
    flock 9
    # Someone else may have finished while we waited.
    if [ "$(installed_version || true)" = "$VERSION" ]; then
        exit 0
    fi
fi

# Install into a staging dir, then swap it in, so a half-finished install is
# never mistaken for a good one.
STAGE="$(mktemp -d "$ROOT/.tools/yaml-ls.tmp.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
chmod 755 "$STAGE"   # mktemp -d makes it 0700
printf '{"name":"hookline-yaml-ls","private":true}\n' > "$STAGE/package.json"

echo "install-yaml-ls: installing yaml-language-server@$VERSION into .tools/yaml-ls/" >&2
if ! npm install --prefix "$STAGE" --no-audit --no-fund --no-save --loglevel=error \
        "yaml-language-server@$VERSION" >&2; then
    echo "install-yaml-ls: npm install failed" >&2
    exit 1
fi

rm -rf "$DEST"
mv "$STAGE" "$DEST"
trap - EXIT

got="$(installed_version || true)"
if [ "$got" != "$VERSION" ]; then
    echo "install-yaml-ls: expected yaml-language-server $VERSION, found '${got:-nothing}'" >&2
    exit 1
fi
echo "install-yaml-ls: installed yaml-language-server@$VERSION" >&2
