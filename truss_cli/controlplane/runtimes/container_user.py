"""Which uid and gid a container's processes run as: what files copied into it must belong to,
so that only that user can read them.

The image's `USER` says it (`Config.User`): empty (root), `uid`, `uid:gid`, or names. A
truss-cli image always names numbers (`docker_server.run_as_user_id`, or the server's user),
but a `no_build` custom server runs as its base image's user, which may be a name. Names are
resolved as the engine resolves them, in the container's own /etc/passwd and /etc/group
(read from the created container, before anything runs); a user without a group gets its
primary group, or 0 when /etc/passwd does not list it (the engine's rule too).
"""

from __future__ import annotations

import io
import tarfile
from typing import Callable, Optional, Tuple

import docker
import docker.errors

from truss_cli.errors import TrussError

ReadFile = Callable[[str], Optional[str]]


def container_user(client: docker.APIClient, container_id: str) -> Tuple[int, int]:
    """The (uid, gid) the created container `container_id` will run its command as."""
    spec = client.inspect_container(container_id)["Config"].get("User") or ""
    return resolve_user(spec, lambda path: _read_text(client, container_id, path))


def resolve_user(spec: str, read_file: ReadFile) -> Tuple[int, int]:
    """`spec` as in `USER` (`name|uid[:group|gid]`) -> (uid, gid); `read_file(path)` gives a
    file of the container (None if it has none)."""
    user, _, group = spec.partition(":")
    if not user:
        return 0, 0
    # /etc/passwd is read only when needed: for a name, or a user's primary group.
    entry = _passwd_entry(user, read_file) if not user.isdigit() or not group else None
    if user.isdigit():
        uid = int(user)
    elif entry is None:
        raise TrussError(
            f"the image runs as user {user!r}, which its /etc/passwd does not list",
            hint="set docker_server.run_as_user_id in config.yaml, or give the image a numeric USER",
        )
    else:
        uid = entry[0]
    if not group:
        return uid, entry[1] if entry is not None else 0
    if group.isdigit():
        return uid, int(group)
    gid = _group_id(group, read_file)
    if gid is None:
        raise TrussError(
            f"the image runs as group {group!r}, which its /etc/group does not list",
            hint="give the image a numeric USER (uid:gid)",
        )
    return uid, gid


def _passwd_entry(user: str, read_file: ReadFile) -> Optional[Tuple[int, int]]:
    """(uid, primary gid) of `user`, a name or a uid, in /etc/passwd."""
    for fields in _records(read_file("/etc/passwd")):
        if len(fields) >= 4 and (fields[0] == user or fields[2] == user) and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3])
    return None


def _group_id(group: str, read_file: ReadFile) -> Optional[int]:
    for fields in _records(read_file("/etc/group")):
        if len(fields) >= 3 and fields[0] == group and fields[2].isdigit():
            return int(fields[2])
    return None


def _records(text: Optional[str]) -> list[list[str]]:
    return [line.split(":") for line in (text or "").splitlines() if line and not line.startswith("#")]


def _read_text(client: docker.APIClient, container_id: str, path: str) -> Optional[str]:
    """A small file of the container (which need not have started); None if it has none."""
    try:
        chunks, _ = client.get_archive(container_id, path)
    except docker.errors.NotFound:
        return None  # a scratch-like image: no user database
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        member = next((m for m in archive.getmembers() if m.isfile()), None)  # a link's target is not followed
        source = archive.extractfile(member) if member is not None else None
        return source.read().decode("utf-8", "replace") if source is not None else None
