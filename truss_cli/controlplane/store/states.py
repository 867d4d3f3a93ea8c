"""The words rows are in: Baseten's deployment statuses and the states of what the store tracks.

Plain string constants (not Enum members) because they travel as-is into JSON responses and
database columns; the frozensets let the store refuse a misspelt status instead of saving it.
"""

from __future__ import annotations

# Baseten's deployment statuses (design.md, "Deployment lifecycle").
BUILDING = "BUILDING"
BUILD_FAILED = "BUILD_FAILED"
DEPLOYING = "DEPLOYING"
LOADING_MODEL = "LOADING_MODEL"
ACTIVE = "ACTIVE"
UNHEALTHY = "UNHEALTHY"
DEPLOY_FAILED = "DEPLOY_FAILED"
UPDATING = "UPDATING"
DEACTIVATING = "DEACTIVATING"
INACTIVE = "INACTIVE"
SCALED_TO_ZERO = "SCALED_TO_ZERO"
WAKING_UP = "WAKING_UP"
DEPLOYMENT_STATUSES = frozenset(
    {BUILDING, BUILD_FAILED, DEPLOYING, LOADING_MODEL, ACTIVE, UNHEALTHY, DEPLOY_FAILED, UPDATING,
     DEACTIVATING, INACTIVE, SCALED_TO_ZERO, WAKING_UP}
)

# The word a model page shows for each status (Baseten's); listings show the precise status too.
STATUS_LABELS = {
    BUILDING: "Deploying", DEPLOYING: "Deploying", LOADING_MODEL: "Deploying", WAKING_UP: "Waking up",
    UPDATING: "Deploying", ACTIVE: "Active", BUILD_FAILED: "Deployment Failed", DEPLOY_FAILED: "Deployment Failed",
    UNHEALTHY: "Unhealthy", DEACTIVATING: "Deactivating", INACTIVE: "Inactive", SCALED_TO_ZERO: "Scaled to zero",
}

# What the API asks a deployment to be; the reconciler makes it so.
DESIRED_ACTIVE = "active"
DESIRED_INACTIVE = "inactive"
DESIRED_STATES = frozenset({DESIRED_ACTIVE, DESIRED_INACTIVE})

# A build's life: queued -> running -> succeeded | failed (running -> queued after a crash).
BUILD_QUEUED = "queued"
BUILD_RUNNING = "running"
BUILD_SUCCEEDED = "succeeded"
BUILD_FAILED_STATE = "failed"
BUILD_STATES = frozenset({BUILD_QUEUED, BUILD_RUNNING, BUILD_SUCCEEDED, BUILD_FAILED_STATE})

# A replica's observed phase: the model server's own phases (server/protocol.py) plus the
# supervisor's view of a process or container that is gone.
REPLICA_PHASES = frozenset({"starting", "loading", "ready", "failed", "stopping", "stopped", "unknown"})

# API key scopes: admin may do everything; invoke may only predict (on its models, if named).
SCOPE_ADMIN = "admin"
SCOPE_INVOKE = "invoke"
SCOPES = frozenset({SCOPE_ADMIN, SCOPE_INVOKE})
