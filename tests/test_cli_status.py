"""`vmmemctl status` on this machine, as a user runs it."""

from __future__ import annotations

import json
import re
import os
import sys

import pytest
from helpers import run_cli, tree

JSON_GUEST_KEYS = {"total_bytes", "free_bytes", "available_bytes", "anon_bytes", "page_cache_bytes", "shmem_bytes",
                   "slab_reclaimable_bytes", "dirty_bytes", "reclaimable_bytes", "returnable_free_bytes",
                   "fragmented_free_bytes", "psi_memory_some_avg10", "psi_io_some_avg10", "cpu_busy_percent"}


def this_machine():
    """What this machine is, by the same detection `status` uses (so the test holds on WSL2 too)."""
    from monitor.kernel.environment import detect_environment
    from monitor.kernel.procfs import LocalFiles

    return detect_environment(LocalFiles("/proc"), os.environ)


def psi_here() -> bool:
    """Whether PSI reads here, by the probe that reads it (off in WSL2's kernel unless psi=1)."""
    from monitor.config.schema import Config
    from monitor.probes.probeset import build

    probes = build(Config(), environ={})
    try:
        return probes.sample_guest().psi_io is not None
    finally:
        probes.close()


def check_status_json(data: dict, kind: str, psi: bool) -> None:
    assert data["environment"]["kind"] == kind
    host = data["host"]
    assert isinstance(host["bytes"], int) and isinstance(host["estimated"], bool)
    assert host["estimated"] is (host["source"] == "estimate")
    guest = data["guest"]
    assert JSON_GUEST_KEYS <= set(guest)
    for key in JSON_GUEST_KEYS - {"psi_memory_some_avg10", "psi_io_some_avg10", "cpu_busy_percent"}:
        assert isinstance(guest[key], int) and guest[key] >= 0, key
    for key in ("psi_memory_some_avg10", "psi_io_some_avg10"):
        assert isinstance(guest[key], float) if psi else guest[key] is None, key
    assert guest["page_cache_bytes"] < guest["total_bytes"]


def test_status_json_on_this_machine():
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    env = this_machine()
    check_status_json(data, env.kind, psi_here())
    assert data["environment"]["distro"] == env.distro
    assert 0 <= data["guest"]["cpu_busy_percent"] <= 100


def test_status_table_on_this_machine():
    result = run_cli("status")
    assert result.returncode == 0, result.stderr
    for label in ("environment", "host footprint", "page cache", "programs (anon)", "shmem/tmpfs",
                  "slab reclaimable", "dirty", "available", "reclaimable now", "returnable free",
                  "fragmented free", "PSI memory some avg10", "PSI io some avg10", "CPU busy"):
        assert label in result.stdout, label
    assert this_machine().label() in result.stdout
    assert ("n/a (no PSI)" in result.stdout) is not psi_here()


# No Windows tools on PATH: on a real WSL2 machine the recorded tree would otherwise be joined to
# the real host's footprint. The kind and PSI are facts of each recording (tests/trees/README.md).
NO_WINDOWS = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"])}


@pytest.mark.parametrize("name, kind, psi", [("wsl2-ubuntu", "wsl2", False), ("wsl2-2020", "wsl2", False),
                                             ("linux-vm", "linux", True)])
def test_status_json_on_recorded_trees(name, kind, psi):
    result = run_cli("status", "--json", "--proc-root", str(tree(name)), "--cpu-window", "0", env=NO_WINDOWS)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    check_status_json(data, kind, psi)
    if kind == "wsl2":  # interop unreachable here: the footprint is the guest's estimate, and says why
        assert data["host"]["source"] == "estimate" and "interop" in data["host"]["error"]
        assert data["host"]["metric"] == "estimate"


def test_status_table_on_the_recorded_wsl2_tree():
    result = run_cli("status", "--proc-root", str(tree("wsl2-ubuntu")), "--cpu-window", "0", env=NO_WINDOWS)
    assert result.returncode == 0, result.stderr
    assert "WSL2  (kernel 5.15.153.1-microsoft-standard-WSL2)" in result.stdout
    assert result.stdout.count("n/a (no PSI)") == 2 and "WSL autoMemoryReclaim" in result.stdout
    assert "metric: estimated from the guest" in result.stdout


def test_status_unknown_is_null_in_json():
    result = run_cli("status", "--json", "--proc-root", str(tree("hostile-missing")), "--cpu-window", "0")
    guest = json.loads(result.stdout)["guest"]
    assert guest["page_cache_bytes"] is None and guest["returnable_free_bytes"] is None
    assert guest["psi_io_some_avg10"] is None


def test_unusable_proc_root_is_exit_2(tmp_path):
    for root, message in ((tmp_path / "nope", "no such directory"), (tmp_path, "has no meminfo")):
        result = run_cli("status", "--proc-root", str(root))
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_bad_arguments_are_one_line():
    result = run_cli("status", "--bogus")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "unrecognized arguments" in result.stderr


def test_python_dash_m_and_version():
    assert run_cli("--version").stdout.startswith("vmmemctl ")


def test_status_and_history_show_the_working_set_and_each_reclaims_cost(tmp_path):
    import time

    from monitor.history.store import Store
    from monitor.reclaim import workingset

    MiB = 1024**2
    db = tmp_path / "h.db"
    now = time.time()
    with Store(db) as store:
        workingset.save(store, workingset.WorkingSet(310 * MiB, now - 12 * 60, 0.25))
        data = {"methods_run": ["gradual", "compact"], "freed_bytes": 1000 * MiB, "stop_reason": "refaults",
                "reread_bytes_after": 2 * MiB, "reread_source": "refaults", "cost_window_s": 300.0}
        store.add_event("reclaim", "reclaim gradual+compact (manual): freed 1000 MiB", data=data, t=now - 600)
        store.add_event("reclaim", "reclaim gradual+compact (manual): freed 10 MiB",
                        data={"freed_bytes": 10 * MiB, "stop_reason": "target"}, t=now - 60)
    args = ("--proc-root", str(tree("linux-vm")), "--cpu-window", "0", "--db", str(db))
    text = run_cli("status", *args)
    assert text.returncode == 0, text.stderr
    # 0.5 ** (12/60); a loaded machine may take a second or more to get here: "12m" or "12m3s"
    assert re.search(r"gradual: working set ~ 270 MiB, learned 12m(\d+s)? ago \(learned as 310 MiB, decaying\)",
                     text.stdout), text.stdout
    ws = json.loads(run_cli("status", "--json", *args).stdout)["working_set"]
    assert ws["learned_bytes"] == 310 * MiB and ws["start_level_bytes"] == int(ws["bytes"] * 1.25)
    history = run_cli("history", "--events", "--db", str(db), "--since", "1h")
    assert history.returncode == 0, history.stderr
    assert "stopped: refaults; re-read 2.0 MiB in 5m after (0.2% of freed) [refaults]" in history.stdout
    assert "stopped: target; cost: measuring" in history.stdout


def test_free_memory_adds_up_or_says_where_the_rest_is():
    """Issue 28: free 21.0 GiB beside returnable 8.6 GiB + fragmented 274 MiB, the rest unsaid. The linux-vm
    tree (a VM whose zoneinfo manages less than is present) has 16.7 GiB free in no free list."""
    for name, shown in (("linux-vm", True), ("wsl2-ubuntu", False)):
        data = json.loads(run_cli("status", "--json", "--cpu-window", "0", "--proc-root", str(tree(name))).stdout)
        g = data["guest"]
        assert g["returnable_free_bytes"] + g["fragmented_free_bytes"] + g["unlisted_free_bytes"] == g["free_bytes"]
        text = run_cli("status", "--cpu-window", "0", "--proc-root", str(tree(name))).stdout
        row = re.search(r"^  not in free lists +(\S+ \S+) +counted free but in no free list", text, re.M)
        assert bool(row) == shown, text
        if shown:
            assert row.group(1) == "16.7 GiB"
