"""The names both sides of a replica agree on: HTTP paths and environment variables.

Imported by the model server and by the CLI side that starts replicas and calls them, so a
path or a variable is spelled in one place. Import-free on purpose.
"""

READINESS_PATH = "/v1/models/model"
PREDICT_PATH = "/v1/models/model:predict"
SCHEMA_PATH = "/v1/models/model/schema"
METRICS_PATH = "/metrics"

# TRUSS_SECRET_<name>=value hands one secret to the model.
SECRET_ENV_PREFIX = "TRUSS_SECRET_"
# A directory with one file per secret (a mounted volume in a container).
SECRETS_DIR_ENV = "TRUSS_SECRETS_DIR"
# os.pathsep-separated absolute paths; replaces the config's `external_package_dirs`.
EXTERNAL_PACKAGE_DIRS_ENV = "TRUSS_EXTERNAL_PACKAGE_DIRS"
