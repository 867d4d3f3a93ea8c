"""`python -I logshim.py --log FILE --exit-file FILE [--wait-for-go] -- COMMAND...`: runs COMMAND
(a replica) and appends each line it prints to FILE with the time it was printed.

Why a process of its own: a replica must outlive the control plane that started it, so
nothing in the control plane may sit between the replica and its log (a copying thread dies
with it, and the replica would then block or die on a full or broken pipe). This small
process lives exactly as long as the replica, in its session, and records how it ended.

With `--wait-for-go` it first reads its stdin, a pipe from the control plane: COMMAND runs
only once a byte arrives, which the control plane writes after recording the replica where a
restarted control plane finds it (the process runtime's handle.json). A control plane killed
in between closes the pipe unwritten, and the replica never starts: nothing would ever stop it.

Standard library only, and run by path with `-I`: it needs nothing of truss_cli and must
not see the replica's PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timezone
from typing import BinaryIO, Optional

# After the replica exits, how long its last output may take (a grandchild that inherited
# the pipe could hold it open for ever).
_DRAIN_SECONDS = 5.0
SHIM_PREFIX = "[truss] "


def format_line(at: datetime, text: str) -> bytes:
    """One log line as stored: an ISO 8601 UTC time, a space, the text (no newline inside)."""
    stamp = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp} {text}\n".encode("utf-8", "replace")


def append_line(fd: int, text: str, at: Optional[datetime] = None) -> None:
    os.write(fd, format_line(at or datetime.now(timezone.utc), text))


def _copy(source: BinaryIO, fd: int) -> None:
    for raw in iter(source.readline, b""):
        append_line(fd, raw.rstrip(b"\n").decode("utf-8", "replace"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="logshim")
    parser.add_argument("--log", required=True)
    parser.add_argument("--exit-file", required=True)
    parser.add_argument("--wait-for-go", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    # A stop signals the whole session: the replica drains and exits on its own; this process
    # stays to record its last lines. (Handlers, unlike SIG_IGN, are not inherited over exec.)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: None)
    fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    if args.wait_for_go and not _told_to_go():
        append_line(fd, f"{SHIM_PREFIX}not started: the control plane that started this replica ended "
                        "before recording it")
        return 1
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        append_line(fd, f"{SHIM_PREFIX}could not start the replica: {exc}")
        _write_exit(args.exit_file, 127)
        return 127
    assert child.stdout is not None
    copier = threading.Thread(target=_copy, args=(child.stdout, fd), daemon=True)
    copier.start()
    code = child.wait()
    copier.join(_DRAIN_SECONDS)
    append_line(fd, f"{SHIM_PREFIX}replica exited with code {code}")
    _write_exit(args.exit_file, code)
    return 0


def _told_to_go() -> bool:
    """One byte on stdin: go. End of file first: the control plane is gone."""
    try:
        return os.read(sys.stdin.fileno(), 1) != b""
    except OSError:
        return False


def _write_exit(path: str, code: int) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as output:
        output.write(str(code))
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
