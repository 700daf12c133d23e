#!/usr/bin/env bash
# The S3 endpoint of the real-CNPG lab tier's WAL-archive channel: moto's server (PyPI; MinIO is
# not served here), pinned, in a virtualenv cached by version under
# ~/.cache/federator/moto-<version>/. Prints the virtualenv's python (the lab runs
# `python <script>` calling `moto.server.main`).
set -euo pipefail

VERSION="${MOTO_VERSION:-5.2.5}"
CACHE_ROOT="${FEDERATOR_CACHE:-$HOME/.cache/federator}"
OUT_DIR="$CACHE_ROOT/moto-$VERSION"
PY="$OUT_DIR/bin/python"

if [[ -f "$OUT_DIR/.complete" && -x "$PY" ]]; then
  echo "$PY"
  exit 0
fi
command -v python3 >/dev/null || { echo "error: python3 is required to install moto $VERSION" >&2; exit 1; }
echo "installing moto[server] $VERSION from PyPI into $OUT_DIR..." >&2
# A virtualenv names its own directory in its scripts: made in place, `.complete` written last.
rm -rf "$OUT_DIR" "$OUT_DIR.tmp"
python3 -m venv "$OUT_DIR"
"$OUT_DIR/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$VERSION" >&2 \
  || { echo "error: pip could not install moto[server]==$VERSION (is PyPI reachable? is the version served?)" >&2; exit 1; }
"$PY" -c "import moto.server; assert moto.__version__ == '$VERSION', moto.__version__"
touch "$OUT_DIR/.complete"
echo "$PY"
