"""Fixtures for tests that boot the QEMU lab (lab/vm.py).

Tests using these are skipped with a reason when the lab is not built or QEMU
is missing; set VMMEMCTL_LAB_BUILD=1 to have the fixture run build.sh instead.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab import vm as labvm  # noqa: E402  (lab/vm.py: the lab client, shared with bench/)

# The lab's images are a build cache under the real HOME, not user config or history: fix its place
# now, before each test's isolated HOME (tests/conftest.py) would hide it.
os.environ.setdefault("VMMEMCTL_LAB_CACHE", str(labvm.default_cache_dir()))


def pytest_configure(config):
    # Harmless if pyproject.toml registers it too.
    config.addinivalue_line("markers", "lab: boots a QEMU guest (lab/)")


@pytest.fixture(scope="session")
def lab_built():
    """The lab manifest (dict); skips when the lab is not usable."""
    ok, why = labvm.lab_status()
    if not ok and os.environ.get("VMMEMCTL_LAB_BUILD", "") not in ("", "0"):
        labvm.build()
        ok, why = labvm.lab_status()
    if not ok:
        pytest.skip(f"QEMU lab not available: {why} "
                    "(build it with lab/build.sh, or set VMMEMCTL_LAB_BUILD=1)")
    return labvm.load_manifest()


@pytest.fixture
def lab_vm_factory(lab_built):
    """lab_vm_factory(**LabVM kwargs) -> started LabVM, stopped at teardown."""
    vms: list[labvm.LabVM] = []

    def start(**kwargs) -> labvm.LabVM:
        vm = labvm.LabVM(**kwargs)
        vms.append(vm)
        return vm.start()

    yield start
    for vm in vms:
        vm.stop()


# --------------------------------------------------------------------------
# One booted guest shared by a module's tests (a TCG boot is 10-15 s)
# --------------------------------------------------------------------------

# What a test may leave in the guest, put back before the next test that shares it: processes it started
# (every agent command runs in a session of its own, and so do the jobs it leaves behind; the guest's own
# are init's and the agents', whose sessions the snapshot keeps), cgroups it made (thawed first),
# files it left under /tmp, /run and /tmp/run, and the page cache (dropped and compacted, then free page
# reporting is given time to hand it back to the host, so the next test's host RSS starts settled).
# A guest whose MGLRU setting was changed (tests/lab/test_slow_set_lab.py) cannot be put back: the
# pool boots a fresh one. Output: "ok" or "dirty: WHY".
_SNAPSHOT = r"""
for d in /proc/[0-9]*; do
    read -r _ comm _ _ _ sid _ < $d/stat 2>/dev/null && case "$comm" in "(init)"|"(lab-agent)") echo "sid $sid" ;; esac
done
find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sed 's/^/cgroup /'
for e in /tmp/* /tmp/.[!.]* /run/* /run/.[!.]* /tmp/run/* /tmp/run/.[!.]*; do [ -e "$e" ] && echo "file $e"; done
echo "lru $(cat /sys/kernel/mm/lru_gen/enabled 2>/dev/null || echo none)"
"""

_RESET = r"""
read -r _ _ _ _ _ mysid _ < /proc/$$/stat
[ "$(cat /sys/kernel/mm/lru_gen/enabled 2>/dev/null || echo none)" = "$LRU" ] || { echo "dirty: MGLRU changed"; exit 0; }
for f in $(find /sys/fs/cgroup -mindepth 2 -name cgroup.freeze 2>/dev/null); do echo 0 > $f; done
for d in /proc/[0-9]*; do
    [ -e $d/exe ] || continue   # kernel threads have no executable
    read -r pid comm _ _ _ sid _ < $d/stat 2>/dev/null || continue
    case " $SIDS $mysid " in *" $sid "*) continue ;; esac
    case "$comm" in "(init)"|"(lab-agent)") continue ;; esac
    kill -KILL $pid 2>/dev/null
done
for e in /tmp/* /tmp/.[!.]* /run/* /run/.[!.]* /tmp/run/* /tmp/run/.[!.]*; do
    [ -e "$e" ] || continue
    case " $FILES " in *" $e "*) ;; *) rm -rf "$e" ;; esac
done
i=0
while :; do
    left=""
    for g in $(find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort -r); do
        case " $CGROUPS " in *" $g "*) ;; *) rmdir $g 2>/dev/null || left="$left $g" ;; esac
    done
    [ -z "$left" ] && break
    i=$((i + 1))
    [ $i -ge 20 ] && { echo "dirty: cgroups left:$left"; exit 0; }
    sleep 0.5
done
sync
echo 3 > /proc/sys/vm/drop_caches
[ -e /proc/sys/vm/compact_memory ] && echo 1 > /proc/sys/vm/compact_memory
echo ok
"""


class SharedGuests:
    """A module's guests: ``get(**LabVM kwargs)`` -> a booted LabVM, the same one for every test that asks
    for the same kwargs (put back as it was after its boot in between, see _RESET), one running at a time.

    ``setup(vm)`` runs once after each boot (e.g. mounting the guest's Python disk); the state it leaves
    is part of what every reset goes back to. ``retire()`` drops the current guest (a test that changed it
    in a way no reset undoes); a failed reset does the same, and the next test boots a fresh guest."""

    def __init__(self):
        self.vm: labvm.LabVM | None = None
        self.key: tuple | None = None
        self.base: dict[str, list[str]] = {}
        self.used = False

    @staticmethod
    def _key(kwargs: dict) -> tuple:
        return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))

    def get(self, setup: Callable[[labvm.LabVM], None] | None = None, **kwargs) -> labvm.LabVM:
        key = self._key(kwargs)
        if self.vm is not None and (self.key != key or not self.vm.is_running()):
            self.retire()
        if self.vm is not None and self.used and not self._reset():
            self.retire()
        if self.vm is None:
            vm = labvm.LabVM(**kwargs)
            self.vm, self.key, self.used = vm.start(), key, False
            try:
                if setup is not None:
                    setup(vm)
                self._snapshot()
            except BaseException:
                self.retire()
                raise
        self.used = True
        return self.vm

    def retire(self) -> None:
        if self.vm is not None:
            self.vm.stop()
        self.vm, self.key, self.base, self.used = None, None, {}, False

    def _snapshot(self) -> None:
        rc, out = self.vm.sh(_SNAPSHOT, timeout=120)
        assert rc == 0, out
        base: dict[str, list[str]] = {"sid": [], "cgroup": [], "file": [], "lru": []}
        for line in out.decode().splitlines():
            kind, _, value = line.partition(" ")
            base.setdefault(kind, []).append(value)
        self.base = base

    def _reset(self) -> bool:
        """Put the guest back; False (and why, on stderr) where it cannot be."""
        env = {"SIDS": " ".join(sorted(set(self.base["sid"]))), "CGROUPS": " ".join(self.base["cgroup"]),
               "FILES": " ".join(self.base["file"]), "LRU": (self.base["lru"] or ["none"])[0]}
        script = "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()) + _RESET
        try:
            rc, out = self.vm.sh(script, timeout=180)
        except labvm.LabError as e:
            rc, out = -1, str(e).encode()
        said = out.decode(errors="replace").strip()
        if rc != 0 or said != "ok":
            print(f"lab: the shared guest could not be put back ({said or rc}); booting a fresh one",
                  file=sys.stderr)
            return False
        self.vm.wait_rss_settled()
        return True


@pytest.fixture(scope="module")
def lab_shared_vm(lab_built):
    """shared(setup=None, **LabVM kwargs) -> a started LabVM shared by this module's tests that ask for the
    same kwargs, put back to its state after boot (and setup) before each (see SharedGuests)."""
    guests = SharedGuests()
    yield guests.get
    guests.retire()
