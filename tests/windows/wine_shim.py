"""Test-only: what Wine cannot give, put back for the Windows smoke test (tests/test_windows_smoke.py).

Wine 8 does not implement the NtQuerySystemInformation class psutil asks for a process's name, so
``psutil.Process.name()`` raises OSError(22) for every process there (on Windows it works). Here a
name is taken from the process's command line (``cmdline()`` works under Wine): the stand-in VM,
python.exe copied as vmmemWSL.exe, is then found by its name as on Windows. Nothing of vmmemctl's
own is replaced; this file is never imported outside that test.

``python.exe -c "import wine_shim; wine_shim.run()" ARGS...`` (with this folder and the repository on
sys.path) runs ``vmmemctl ARGS``; ``wine_shim.run_script(sys.argv[1])`` with ARGS = PATH, ... runs a script instead.
"""

import ntpath
import runpy
import sys

import psutil


def _name_from_cmdline(self) -> str:
    try:
        argv = self.cmdline()
    except OSError as exc:  # psutil's AccessDenied and the like are psutil errors, kept as they are
        raise psutil.AccessDenied(self.pid) from exc
    if not argv:
        raise psutil.AccessDenied(self.pid)
    return ntpath.basename(argv[0])


psutil.Process.name = _name_from_cmdline


def run() -> None:
    from monitor.cli.main import main

    sys.argv[0] = "vmmemctl"
    sys.exit(main(sys.argv[1:]))


def run_script(path: str) -> None:
    """Run the script ``path`` as __main__; ``-c`` left it first among sys.argv[1:], its arguments after."""
    sys.argv = sys.argv[1:]
    runpy.run_path(path, run_name="__main__")
