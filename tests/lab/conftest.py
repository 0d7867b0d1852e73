"""Fixtures for tests that boot the QEMU lab (lab/vm.py).

Tests using these are skipped with a reason when the lab is not built or QEMU
is missing; set VMMEMCTL_LAB_BUILD=1 to have the fixture run build.sh instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
