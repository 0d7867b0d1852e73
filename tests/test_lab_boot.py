"""The lab's boot: a guest kernel that panics before its agent answers is booted again.

QEMU's multi-threaded TCG now and then lets a guest CPU see a half-patched
instruction while the kernel rewrites its static keys in early init (recorded:
tests/data/lab/console-int3-panic.log, an "Oops: int3" then a panic; QEMU quits,
the kernel runs with panic=-1 and QEMU with -no-reboot). These tests run
lab/vm.py against a fake qemu-system-x86_64 (a real subprocess) that panics
the first N boots, then answers the agent's PING on its sockets as the guest's
agent does; no QEMU or lab build is needed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab import vm as labvm  # noqa: E402

PANIC_LOG = Path(__file__).parent / "data" / "lab" / "console-int3-panic.log"

FAKE_QEMU = r'''#!PYTHON
"""Fake qemu-system-x86_64: panic the first PANICS boots, then answer PINGs."""
import os, socket, sys, threading
argv = sys.argv[1:]
state = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boots")
n = int(open(state).read()) + 1 if os.path.exists(state) else 1
open(state, "w").write(str(n))
console, sockets = None, []
for a in argv:
    if a.startswith("file,id=con,path="):
        console = a.split("path=", 1)[1]
    elif a.startswith("socket,id=agent"):
        sockets.append(a.split("path=", 1)[1].split(",", 1)[0])
if n <= PANICS:
    open(console, "w").write(open(PANIC_LOG).read())
    sys.exit(0)
if EXIT_PLAIN:
    sys.exit(1)
open(console, "w").write("[    1.0] booted\n")

def serve(path):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    while True:
        conn, _ = srv.accept()
        buf = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == b"PING":
                    conn.sendall(parts[1] + b" PONG\n")

for p in sockets:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
'''


def _fake_lab(tmp_path: Path, panics: int, exit_plain: bool = False) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("kernel", "initrd", "data"):
        (cache / name).write_bytes(b"")
    qemu = cache / "qemu-system-x86_64"
    qemu.write_text(FAKE_QEMU.replace("PYTHON", sys.executable).replace("PANICS", str(panics))
                    .replace("PANIC_LOG", repr(str(PANIC_LOG))).replace("EXIT_PLAIN", str(exit_plain)))
    qemu.chmod(0o755)
    (cache / "lab.json").write_text(json.dumps(
        {"qemu": str(qemu), "kernel": str(cache / "kernel"), "initrd": str(cache / "initrd"),
         "data": str(cache / "data")}))
    return cache


def _boots(cache: Path) -> int:
    return int((cache / "boots").read_text())


def test_the_recorded_panic_is_found_in_the_console_log():
    assert labvm._boot_panic(PANIC_LOG.read_text()) == "Oops: int3: 0000 [#2] PREEMPT SMP NOPTI"
    assert labvm._boot_panic("[    1.0] Run /init as init process\n[    2.0] random: crng init done\n") == ""


def test_a_guest_that_panics_at_boot_is_booted_again_and_its_logs_are_kept(tmp_path, capsys):
    cache = _fake_lab(tmp_path, panics=1)
    vm = labvm.LabVM(cache_dir=cache, run_dir=tmp_path / "run", channels=2, boot_timeout=60)
    try:
        vm.start()
        assert vm.is_running()
        assert _boots(cache) == 2
        assert vm.boot_panics == ["Oops: int3: 0000 [#2] PREEMPT SMP NOPTI"]
        assert "Kernel panic" in (tmp_path / "run" / "console.log.boot1").read_text()
        assert "booted" in vm.console_text()
    finally:
        vm.stop(timeout=2)
    assert "guest kernel panicked during boot (attempt 1 of 3)" in capsys.readouterr().err


def test_a_guest_that_always_panics_fails_after_three_boots(tmp_path):
    cache = _fake_lab(tmp_path, panics=99)
    vm = labvm.LabVM(cache_dir=cache, run_dir=tmp_path / "run", channels=1, boot_timeout=60)
    with pytest.raises(labvm.GuestPanickedAtBoot, match="guest kernel panic"):
        vm.start()
    assert _boots(cache) == labvm.BOOT_ATTEMPTS
    assert not vm.is_running()


def test_qemu_exiting_without_a_panic_is_not_retried(tmp_path):
    cache = _fake_lab(tmp_path, panics=0, exit_plain=True)
    vm = labvm.LabVM(cache_dir=cache, run_dir=tmp_path / "run", channels=1, boot_timeout=60)
    with pytest.raises(labvm.LabError, match="QEMU exited with 1 during boot") as e:
        vm.start()
    assert not isinstance(e.value, labvm.GuestPanickedAtBoot)
    assert _boots(cache) == 1
