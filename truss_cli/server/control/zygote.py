"""The zygote: a warm, single-threaded process that forks model workers.

Started once by the supervisor on the replica's interpreter, it imports what every worker
needs (uvicorn, starlette, the model server) so a restart pays for the model's own import and
`load()` only, not for the server's (~0.3 s). It never runs an event loop or a thread (a fork
copies only the forking thread, so a lock another thread held would stay locked forever in
the child); it checks that before every fork. It reads one JSON line per worker to fork on
stdin (the spec of worker.run) and exits when stdin closes: the supervisor is gone.
It never imports model code: each worker imports the model's current files itself.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback

from truss_cli.server.control import worker  # the warm imports: the server and its packages
from truss_cli.server.serve import configure_logging


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux: the threading module sees the Python threads at least
        import threading

        return threading.active_count()


def main() -> int:
    configure_logging()
    worker.warm_imports()
    # Ctrl-C reaches the whole process group: the supervisor decides how workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers are reaped by the kernel: the supervisor learns of their end on their socket.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin.buffer:
        spec = json.loads(line)
        threads = thread_count()
        if threads != 1:
            print(f"error: the zygote has {threads} threads; it forks only when single-threaded", file=sys.stderr)
            return 3
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # model code may wait for its own children
                signal.signal(signal.SIGINT, signal.default_int_handler)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.close(devnull)
                code = worker.run(spec)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
