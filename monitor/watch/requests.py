"""What the watcher does when a client asks (the control endpoint's handler, monitor.control).

The watcher owns the VM: a client's snooze, pause, answer or reclaim is carried out
here, by the owner, as the owner's user (so the dashboard's Reclaim button works
with a root service), each state change one transaction, and recorded with who
asked. A request that no longer makes sense is refused here, whatever a stale
screen showed: a prompt that is not pending any more is not answered, and its
reclaim is not run (issue 24: it once ran anyway and dropped the hot files left).

    op         fields                              result
    hello      -                                   who the watcher is, its config and its latest decision
    snooze     seconds (0 clears)                  the state after
    pause      seconds (0 resumes)                 the state after
    resume     -                                   the state after
    answer     prompt, answer (reclaim | dismiss   the answer, and the reclaim's result (or the snooze)
               | snooze), seconds? (a snooze's)
    reclaim    method?, paths?, dry_run?, settle?, the reclaim's result
               cgroup? (one group), run? (`run`'s
               command: its group after it ended)
    run_start  pid, argv, cache_max?                 `vmmemctl run` as a user: the job's group, made by the
                                                   watcher (root), the client's waiting child moved in
    run_end    group, keep?, settle?               that group's cache given back (unless keep), the group
                                                   removed; the reclaim's result
    reload     -                                   queued; the history says whether it took
    subscribe  -                                   a stream: new samples and events, as they are recorded
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from monitor import __version__
from monitor.config.schema import to_toml
from monitor.errors import UserError
from monitor.kernel.portable import euid
from monitor.control.server import peer_in_group
from monitor.history.store import Store
from monitor.kernel.users import user_name
from monitor.policy.state import DEFAULT_SNOOZE, set_pause, set_snooze
from monitor.reclaim.reclaimer import ReclaimResult
from monitor.reclaim.record import ReclaimRequest, describe_reclaim, reclaim_text
from monitor.units import format_duration
from monitor.watch.recorder import Recorder


class Refused(UserError):
    """The watcher will not do it; the message says why, in one line."""


@dataclass
class Requests:
    recorder: Recorder
    queue_reload: Callable[[], None]
    allowed_users: tuple[str, ...] = ()  # `watch --allow USER`, beside [control] users
    uid: int = field(default_factory=lambda: _own_uid())
    clock: Callable[[], float] = time.time
    # A subscription looks for new rows after each tick (the recorder wakes it), and at least this often
    # (rows another process wrote; whether the client is still there)
    poll: float = 5.0
    _toml: tuple[Any, str] | None = None
    # `run`'s groups made for clients: shown path -> (the group, the client's uid, the command's name)
    _runs: dict[str, tuple[Any, int, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ who may ask

    def authorize(self, peer: Any) -> str | None:
        """None when ``peer`` may act, else the one line it gets."""
        control = self.recorder.config.control
        users = set(control.users) | set(self.allowed_users)
        if peer.uid in (0, self.uid) or peer.user in users or peer_in_group(peer, control.group):
            return None
        who = ["root", _user_name(self.uid)] + sorted(users) + ([f"group {control.group}"] if control.group else [])
        return (f"{peer.user or 'a user'} (uid {peer.uid}) may not act through this watcher; {', '.join(dict.fromkeys(who))} "
                f"may: add them to [control] users in the watcher's config, or use `service install --allow USER`")

    # ------------------------------------------------------------ the requests

    def handle(self, peer: Any, request: Any) -> dict | Iterator[dict]:
        op = request.op
        fields = dict(request.fields)
        if op == "hello":
            return self.hello()
        if op == "subscribe":
            return self.subscribe()
        by = f"{peer.user or f'uid {peer.uid}'}, pid {peer.pid}"
        if op in ("snooze", "pause", "resume"):
            return self._state(op, float(fields.get("seconds", 0)), by)
        if op == "answer":
            return self.answer(int(fields["prompt"]), fields["answer"], by, float(fields.get("seconds") or 0))
        if op == "reclaim":
            run = str(fields.get("run") or "")  # `vmmemctl run`'s job ended: its group's cache, trigger run:NAME
            request = ReclaimRequest(fields.get("method") or self.recorder.config.reclaim.method,
                                     tuple(fields.get("paths") or ()), f"run:{run} ({by})" if run else f"request ({by})",
                                     bool(fields.get("dry_run")), fields.get("settle"), cgroup=str(fields.get("cgroup") or ""),
                                     active_prior=not run)
            return _told(self._reclaim(request))
        if op == "run_start":
            return self.run_start(peer, int(fields["pid"]), list(fields["argv"]), fields.get("cache_max"))
        if op == "run_end":
            return self.run_end(peer, str(fields["group"]), bool(fields.get("keep")), fields.get("settle"), by)
        if op == "reload":
            self.queue_reload()
            return {"queued": True}
        raise Refused(f"unknown request {op!r}")

    def hello(self) -> dict:
        rec = self.recorder
        decision = rec.last_decision
        return {"pid": os.getpid(), "user": _user_name(self.uid), "db": str(rec.wiring.db), "since": rec.started,
                "version": __version__, "config": self._config_text(), "config_path": rec.config.path,
                "decision": None if decision is None else
                {"action": decision.action, "reason": decision.reason, "method": decision.method, "rule": decision.rule,
                 "held": decision.held},
                # what the policy knows of this machine besides its config: a client runs the same policy on
                # the same history and gets this watcher's decision without asking every interval
                "facts": {"wsl_mode": rec.wsl_mode, "gradual_available": rec.gradual_available()},
                "acts": rec.acts}

    def _config_text(self) -> str:
        """The watcher's config as TOML, made again only when a reload changed it (a dashboard asks on
        attaching, after a reload and every half minute)."""
        config = self.recorder.config
        if self._toml is None or self._toml[0] is not config:
            self._toml = (config, to_toml(config))
        return self._toml[1]

    def _state(self, op: str, seconds: float, by: str) -> dict:
        with self._store() as store:
            if op == "snooze":
                state = set_snooze(store, seconds, self.clock(), by=by)
            else:
                state = set_pause(store, 0 if op == "resume" else seconds, self.clock(), by=by)
        return {"snoozed_until": state.snoozed_until, "paused_until": state.paused_until}

    def answer(self, prompt_id: int, answer: str, by: str, seconds: float = 0.0) -> dict:
        """Answer a pending prompt; "reclaim" runs its reclaim here, "snooze" snoozes for ``seconds``
        (0: the default). A prompt that is not pending any more (answered, or expired when its condition
        passed) is refused, and nothing runs."""
        if answer == "reclaim":
            self._may_reclaim()  # before the prompt is marked reclaimed: a refusal leaves it pending
        seconds = seconds or DEFAULT_SNOOZE
        with self._store() as store:
            prompt = next((p for p in store.pending_prompts() if p.id == prompt_id), None)
            if prompt is None:
                raise Refused(f"prompt {prompt_id} is not pending any more: {_status(store, prompt_id)}")
            status = {"reclaim": "reclaimed", "snooze": "snoozed"}.get(answer, "dismissed")
            detail = f"for {format_duration(seconds)}, asked by {by}" if answer == "snooze" else f"asked by {by}"
            if not store.answer_prompt(prompt_id, status, detail):
                raise Refused(f"prompt {prompt_id} was answered meanwhile")
            if answer == "snooze":
                state = set_snooze(store, seconds, self.clock(), by=by)
                return {"prompt": prompt_id, "answer": status, "snoozed_until": state.snoozed_until}
        if answer != "reclaim":
            return {"prompt": prompt_id, "answer": status}
        method = (prompt.data or {}).get("method") or self.recorder.config.reclaim.method
        result = self._reclaim(ReclaimRequest(method, trigger=f"prompt ({by})"))
        return {"prompt": prompt_id, "answer": status, **_told(result)}

    def _reclaim(self, request: ReclaimRequest) -> ReclaimResult:
        if not request.dry_run:
            self._may_reclaim()
        return self.recorder.reclaim_now(request)

    def _may_reclaim(self) -> None:
        if not self.recorder.acts:
            raise Refused(f"this watcher only records: {self.recorder.vm_owner or 'another watcher'} owns the VM")

    # ------------------------------------------------------------ `vmmemctl run` for a user

    def run_start(self, peer: Any, pid: int, argv: list[str], cache_max: int | None) -> dict:
        """Make `run`'s group for a client that may not (a user, with the root watcher), set its
        memory.high, and move ``pid`` in: only the client's own child, waiting to exec COMMAND (its
        parent is the asking process and its real uid the asker's), so no one moves another's process."""
        from monitor.errors import PrivilegeError
        from monitor.kernel.procfs import LocalFiles
        from monitor.reclaim.cgroup_target import CgroupError, make_run_group

        self._may_reclaim()
        if self.recorder.config.guest.exec:
            raise Refused("this watcher is in host mode ([guest] exec): the VM's groups are elsewhere")
        parent, uid = _parent_and_uid(pid)
        if parent != peer.pid or uid != peer.uid:
            raise Refused(f"pid {pid} is not a child of the asking process (pid {peer.pid}, uid {peer.uid}): "
                          "only `vmmemctl run`'s own waiting child is moved")
        group = None
        try:
            group = make_run_group(LocalFiles(self.recorder.config.general.proc_root), pid, argv)
            if cache_max is not None:
                group.set_high(cache_max)
            group.move(pid)
        except (CgroupError, PrivilegeError, OSError) as exc:
            if group is not None:
                group.remove()
            known = isinstance(exc, (CgroupError, PrivilegeError))
            raise Refused(str(exc) if known else f"cannot make the group: {exc.strerror or exc}") from None
        with self._lock:
            self._runs[group.shown] = (group, peer.uid, os.path.basename(argv[0]) or argv[0])
        return {"group": group.shown}

    def run_end(self, peer: Any, shown: str, keep: bool, settle: float | None, by: str) -> dict:
        """The group of a `run` this watcher started: its cache given back (unless ``keep``), then removed."""
        with self._lock:
            entry = self._runs.get(shown)
            if entry is None or peer.uid not in (0, entry[1]):
                raise Refused(f"no run group {shown} of uid {peer.uid} in this watcher (made by run_start)")
            del self._runs[shown]
        group, _, name = entry
        answer: dict = {"group": shown}
        try:
            if not keep:
                request = ReclaimRequest("gradual", trigger=f"run:{name} ({by})", settle=settle, cgroup=shown,
                                         active_prior=False)
                answer.update(_told(self._reclaim(request)))
        finally:
            answer["problem"] = group.remove()
        return answer

    def subscribe(self) -> Iterator[dict | None]:
        """New samples and events as the watcher records them, until the client goes away. It wakes when
        the recorder has ticked (a wait, not a poll: a subscriber polling twice a second cost the watcher
        as much CPU again as its sampling, bench/results/control.md)."""
        rec = self.recorder
        with rec.recorded:
            rec.listeners += 1
            seen = rec.ticks
        try:
            with Store(rec.wiring.db, readonly=True) as store:
                last_sample = store.latest_sample()
                last_t = last_sample.time if last_sample else 0.0
                last_event = max((e.id for e in store.events(since=0, limit=1)), default=0)
                yield {"hello": self.hello()}
                while True:
                    for row in store.rows_after(last_t):
                        last_t = row["t"]
                        yield {"sample": row}
                    for event in store.events_after(last_event):
                        last_event = event.id
                        yield {"event": {"id": event.id, "t": event.t, "kind": event.kind,
                                         "message": event.message, "rule": event.rule, "status": event.status}}
                    yield None  # nothing new: the server checks the client is still there (a slot is freed)
                    seen = rec.wait_for_tick(seen, self.poll)
        finally:
            with rec.recorded:
                rec.listeners -= 1

    def _store(self) -> Store:
        return self.recorder.wiring.open_store()  # this request's own connection


def _parent_and_uid(pid: int) -> tuple[int | None, int | None]:
    """A local process's parent pid and real uid (/proc/PID/status), (None, None) when it is gone."""
    parent = uid = None
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("PPid:"):
                    parent = int(line.split()[1])
                elif line.startswith("Uid:"):
                    uid = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None, None
    return parent, uid


def _told(result: ReclaimResult) -> dict:
    """A reclaim's result as a client shows it: the record, and the words `vmmemctl reclaim` prints."""
    return {"reclaim": result.to_json(), "text": reclaim_text(result), "words": describe_reclaim(result)}


def _status(store: Store, prompt_id: int) -> str:
    row = store.db.execute("SELECT status FROM events WHERE id = ? AND kind = 'prompt'", (prompt_id,)).fetchone()
    return "no such prompt" if row is None else f"it is {row[0]}"


def _own_uid() -> int:
    uid = euid()
    return -1 if uid is None else uid  # Windows: no uids (and no peer that could match one)


def _user_name(uid: int) -> str:
    return user_name(uid) or f"uid {uid}"

