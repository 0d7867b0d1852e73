"""The one composition root: how a run builds its probes, store, reclaims and recorder.

The CLI (`watch`, `reclaim`), the daemon and the dashboard ask a
:class:`Wiring` for finished objects; none of them puts probes, a reclaimer
and a store together by hand. Tests change the fields (a recorded tree's
probes, a private reclaim lock, an injected clock), never the assembly.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from monitor.config.schema import Config
from monitor.errors import PrivilegeError, UserError
from monitor.history.store import Store
from monitor.reclaim.reclaimer import Progress, Reclaimer, ReclaimResult, make_reclaimer
from monitor.reclaim.record import ReclaimRequest, reclaim_and_record

if TYPE_CHECKING:
    from monitor.notify import Notifier
    from monitor.probes.probeset import Probes
    from monitor.watch.metrics import Metrics
    from monitor.watch.recorder import Recorder


def build_probes(config: Config, environ: Mapping[str, str] | None = None) -> Probes:
    from monitor.probes import probeset as probes

    return probes.build(config, environ=environ)


@dataclass
class Wiring:
    config: Config
    db: Path
    environ: Mapping[str, str] | None = None  # None: os.environ
    probes_factory: Callable[[Config, Mapping[str, str] | None], Probes] = build_probes
    reclaim_lock: Path | None = None  # None: the machine-wide reclaim lock
    stop: threading.Event = field(default_factory=threading.Event)  # set at shutdown: a settle ends early

    def probes(self) -> Probes:
        return self.probes_factory(self.config, self.environ)

    def open_store(self) -> Store:
        return Store(self.db)

    def _read_only_store(self) -> Store | None:
        """The history to read what a dry run plans from (nothing is written), or None: none yet, or not a
        history (then it plans without the remembered working set, as a first reclaim would)."""
        from monitor.history.store import open_existing

        try:
            return open_existing(self.db)
        except UserError:
            return None

    def reclaimer(self, probes: Probes, progress: Progress | None = None, dry_run: bool = False) -> Reclaimer:
        """PrivilegeError (one line) when no writer works here: before anything is opened."""
        return make_reclaimer(self.config, probes, progress, dry_run=dry_run, lock_path=self._lock_path(),
                              stop=self.stop)

    def _lock_path(self) -> Path | None:
        """The reclaim lock: None is the machine-wide one; a private one for tests of real processes."""
        environ = os.environ if self.environ is None else self.environ
        return self.reclaim_lock or (Path(environ["VMMEMCTL_RECLAIM_LOCK"]) if environ.get("VMMEMCTL_RECLAIM_LOCK")
                                     else None)

    def reclaim(self, request: ReclaimRequest, *, progress: Progress | None = None, store: Store | None = None,
                stop: threading.Event | None = None, reader: Any = None) -> ReclaimResult:
        """One measured reclaim with fresh probes (so the ticks' CPU readings stay undisturbed), recorded
        in ``store`` (or a connection of its own; none for a dry run). ``request.paths``: those trees'
        cache only (monitor/reclaim/paths.py; unprivileged works for the files the user can open).
        ``reader``: tests force mincore."""
        probes = self.probes()
        own = None
        try:
            if request.paths:
                from monitor.reclaim.paths import make_path_reclaimer
                reclaimer = make_path_reclaimer(self.config, probes, progress, dry_run=request.dry_run,
                                                lock_path=self._lock_path(), stop=stop or self.stop)
            else:
                reclaimer = self.reclaimer(probes, progress, request.dry_run)
            group = None
            if request.cgroup:  # refused (no v2, no such group, frozen: CgroupError) before anything is written
                from monitor.reclaim.cgroup_target import find_group
                group = find_group(probes.files, request.cgroup)
            if store is None and not request.dry_run:
                store = own = self.open_store()
            elif store is None and not request.paths:
                store = own = self._read_only_store()  # a dry run plans from the remembered working set too
            if request.paths:
                from monitor.reclaim.paths import reclaim_paths_and_record
                return reclaim_paths_and_record(reclaimer, store, request, stop=stop or self.stop, reader=reader)
            return reclaim_and_record(reclaimer, store, request, group)
        finally:
            if own is not None:
                own.close()
            probes.close()

    def reclaim_refusal(self) -> str | None:
        """Why reclaims would fail here (no root, no sudo rule), or None: the watcher says so at start."""
        probes = self.probes()
        try:
            self.reclaimer(probes)
            return None
        except PrivilegeError as exc:
            return str(exc)
        finally:
            probes.close()

    def wsl_mode(self, kind: str, profile: str | None = None) -> str | None:
        """WSL's own autoMemoryReclaim mode from .wslconfig (the policy defers to it), or None; ``profile``:
        the PowerShell session's %USERPROFILE%, once it said it (Probes.windows_profile)."""
        from monitor.kernel.procfs import LocalFiles
        from monitor.kernel.wslconfig import detect_wsl_reclaim

        wsl = detect_wsl_reclaim(self.config.policy.wslconfig, kind, LocalFiles(self.config.general.proc_root),
                                 self.environ, session_profile=profile)
        return wsl.mode if wsl else None

    def recorder(self, notifier: Notifier, *, metrics: Metrics | None = None, clock: Callable[[], float] = time.time,
                 run_async: Callable[[Callable[[], None]], None] | None = None,
                 probes: Probes | None = None) -> Recorder:
        """The recorder of this history, its probes primed (the first CPU figure covers a known interval)."""
        from monitor.watch.recorder import Recorder

        probes = probes or self.probes()
        probes.prime()
        recorder = Recorder(self.config, probes, self.open_store(), notifier, self,
                            metrics=metrics, wsl_mode=self.wsl_mode(probes.environment.kind), clock=clock)
        if run_async is not None:
            recorder.run_async = run_async
        return recorder
