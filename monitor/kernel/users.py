"""Users and groups by id, from the system's user database (Windows has none: no names there)."""

from __future__ import annotations


def user_name(uid: int) -> str | None:
    """The name of ``uid``, or None where the user database does not name it."""
    try:
        import pwd
    except ImportError:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def in_group(gid: int, user: str | None, group: str) -> bool:
    """Whether a process with primary group ``gid`` (run by ``user``) is in ``group``: its primary group,
    or the group database lists the user (a peer's credentials carry only the primary gid)."""
    if not group:
        return False
    try:
        import grp

        entry = grp.getgrnam(group)
    except (ImportError, KeyError):
        return False
    return gid == entry.gr_gid or (user is not None and user in entry.gr_mem)
