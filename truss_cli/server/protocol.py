"""The names both sides of a replica agree on: HTTP paths, environment variables, the status
file and the shutdown budget.

Imported by the model server and by the supervisors that start replicas and call them (a
local process, a container, later the control plane's runtimes), so a name or a number is
spelled in one place. Import-free on purpose: it ships inside every replica.
"""

READINESS_PATH = "/v1/models/model"
PREDICT_PATH = "/v1/models/model:predict"
SCHEMA_PATH = "/v1/models/model/schema"
LOADED_PATH = "/v1/models/model/loaded"
# Truss's routes besides predict, each served when the model class defines the method named.
ENDPOINT_PATHS = {
    "/v1/chat/completions": "chat_completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
    "/v1/responses": "responses",
}
WEBSOCKET_PATH = "/v1/websocket"
METRICS_PATH = "/metrics"
# The replica's structured status (truss_cli.server.status.ReplicaStatus as JSON). Answers
# in every phase, also while load() runs and after it failed.
STATUS_PATH = "/v1/replica/status"

# The replica config (truss_cli.server.replica_config, JSON) the server reads instead of
# config.yaml; the `--replica-config` argument wins over it. Written by `truss run` into the
# cache and by an image build into the image.
REPLICA_CONFIG_ENV = "TRUSS_REPLICA_CONFIG"
# TRUSS_SECRET_<name>=value hands one secret to the model.
SECRET_ENV_PREFIX = "TRUSS_SECRET_"
# A directory with one file per secret (a mounted volume in a container).
SECRETS_DIR_ENV = "TRUSS_SECRETS_DIR"

# The server writes its status (truss_cli.server.status) to this file on every phase change.
# A supervisor names the file; the server never picks one on its own.
STATUS_FILE_ENV = "TRUSS_STATUS_FILE"
# An opaque id the supervisor gives its replica. The server repeats it in its status (and in
# the REPLICA_ID_HEADER of every response), so a supervisor knows it talks to its own child,
# not to another server that happens to answer on the same port.
REPLICA_ID_ENV = "TRUSS_REPLICA_ID"
REPLICA_ID_HEADER = "x-truss-replica-id"
# "1": a failed load() leaves the server up, reporting the failure (readiness 503 with the
# summary, status phase "failed"), for a control layer that retries or swaps the model.
# Unset: the process exits with EXIT_LOAD_FAILED, as `truss run` expects.
STAY_UP_ON_LOAD_FAILURE_ENV = "TRUSS_STAY_UP_ON_LOAD_FAILURE"
# Largest accepted request body in bytes; larger ones get 413 naming the limit.
MAX_REQUEST_BYTES_ENV = "TRUSS_MAX_REQUEST_BYTES"
DEFAULT_MAX_REQUEST_BYTES = 128 * 1024 * 1024
# "1": error responses of predict (and the other model routes) carry the exception's type
# and message. Local runs set it; a shared server leaves it off (messages can hold data).
EXPOSE_ERRORS_ENV = "TRUSS_EXPOSE_ERRORS"

# Inside a replica (the image's CMD, a local process): the port the server listens on unless
# told otherwise. 0 means "any free port": the server reports the one it bound in its status.
DEFAULT_SERVER_PORT = 8080

# One shutdown budget. On SIGTERM the server stops accepting, lets in-flight requests finish
# for up to DRAIN_SECONDS, then exits. Every supervisor (a local replica, `docker stop`, a
# Kubernetes pod's terminationGracePeriodSeconds) waits STOP_GRACE_SECONDS before SIGKILL:
# longer than the drain, so a drain is never cut short.
DRAIN_SECONDS = 25
STOP_GRACE_SECONDS = DRAIN_SECONDS + 5

EXIT_LOAD_FAILED = 1
EXIT_BAD_CONFIG = 2

# A development replica (`python -m truss_cli.server.control`, docs/live-reload.md): the
# bearer token of its control API comes from this variable, never from the command line
# (where every local user can read it); workers do not inherit it.
CONTROL_TOKEN_ENV = "TRUSS_CONTROL_TOKEN"
CONTROL_STATE_PATH = "/control/state"
CONTROL_PATCH_PATH = "/control/patch"
CONTROL_RESTART_PATH = "/control/restart"
