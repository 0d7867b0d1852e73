"""`vmmemctl status` on this machine, as a user runs it."""

from __future__ import annotations

import json

from helpers import run_cli, tree

JSON_GUEST_KEYS = {"total_bytes", "free_bytes", "available_bytes", "anon_bytes", "page_cache_bytes", "shmem_bytes",
                   "slab_reclaimable_bytes", "dirty_bytes", "reclaimable_bytes", "returnable_free_bytes",
                   "fragmented_free_bytes", "psi_memory_some_avg10", "psi_io_some_avg10", "cpu_busy_percent"}


def test_status_json_on_this_machine():
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["environment"]["kind"] == "linux" and data["environment"]["distro"] is None
    assert data["host"]["source"] == "estimate" and data["host"]["estimated"] is True
    assert isinstance(data["host"]["bytes"], int)
    guest = data["guest"]
    assert JSON_GUEST_KEYS <= set(guest)
    for key in JSON_GUEST_KEYS - {"psi_memory_some_avg10", "psi_io_some_avg10", "cpu_busy_percent"}:
        assert isinstance(guest[key], int) and guest[key] >= 0, key
    assert 0 <= guest["cpu_busy_percent"] <= 100
    assert isinstance(guest["psi_io_some_avg10"], float)
    assert guest["page_cache_bytes"] < guest["total_bytes"]


def test_status_table_on_this_machine():
    result = run_cli("status")
    assert result.returncode == 0, result.stderr
    for label in ("environment", "host footprint", "page cache", "programs (anon)", "shmem/tmpfs",
                  "slab reclaimable", "dirty", "available", "reclaimable now", "returnable free",
                  "fragmented free", "PSI memory some avg10", "PSI io some avg10", "CPU busy"):
        assert label in result.stdout, label
    assert "Linux" in result.stdout and "estimated" in result.stdout


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

    from monitor import workingset
    from monitor.store import Store

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
    assert "gradual: working set ~ 270 MiB, learned 12m ago (learned as 310 MiB, decaying)" in text.stdout  # 0.5 ** (12/60)
    ws = json.loads(run_cli("status", "--json", *args).stdout)["working_set"]
    assert ws["learned_bytes"] == 310 * MiB and ws["start_level_bytes"] == int(ws["bytes"] * 1.25)
    history = run_cli("history", "--events", "--db", str(db), "--since", "1h")
    assert history.returncode == 0, history.stderr
    assert "stopped: refaults; re-read 2.0 MiB in 5m after (0.2% of freed) [refaults]" in history.stdout
    assert "stopped: target; cost: measuring" in history.stdout
