"""The development replica (`python -m truss_cli.server.control`): the model server behind a
small control layer that applies patches and swaps in new code without a failed request.

    supervisor  binds the public socket once; control API on a loopback port (supervisor.py,
     │          control_api.py); applies files (apply.py); decides hot swap or restart (hotswap.py)
     ├─ zygote  a warm, single-threaded process with the server's imports done (zygote.py)
     │    └─ fork → worker gen N: loads the model, then accepts on the inherited socket (worker.py)
     └─ (during a restart) worker gen N+1 loading while gen N serves

In a docker container, provision.py runs first (as root; `--provision`) and on each patch of
requirements or system_packages (`docker exec`): apt for system packages, an environment
beside the image's venv for requirements (docs/live-reload.md, "Task K").

The contract (routes, verdicts, the patch document) is docs/live-reload.md. Standard library
and the model server's own packages only: this ships in every replica's server bundle.
"""
