"""The one HTTP client of a control plane's management API (`/v1/...`) and its gateway.

Every request carries `Authorization: Api-Key <key>`. An error answer of the control plane
(`{"error", "error_code", "detail"}`) becomes an `ApiError` whose message is the server's
own line; a 404's detail (what does exist) is added to it, so a wrong model or deployment
name shows the right ones. A control plane that does not answer at all says how to start
one. No Typer or rich here: the CLI prints what this returns or raises.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import httpx

from truss_cli.client.remotes import LOCAL_REMOTE, Remote
from truss_cli.errors import TrussError
from truss_cli.net import is_loopback
from truss_cli.sync.envelope import CONTENT_TYPE as ENVELOPE_CONTENT_TYPE

# Management calls are quick; uploads and predictions may take long (only connecting is bounded).
_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=60.0, pool=5.0)
_LONG_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=None, pool=5.0)
_UPLOAD_CHUNK = 1 << 20
ARCHIVE_SHA256_HEADER = "X-Truss-Archive-Sha256"

# Called with the number of bytes just sent (an increment).
ProgressCallback = Callable[[int], None]


class ApiError(TrussError):
    """The control plane answered with an error: its status, code and detail are kept."""

    def __init__(
        self, message: str, status: int, error_code: str | None, detail: Any = None, hint: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, hint=hint)
        self.status = status
        self.error_code = error_code
        self.detail = detail
        self.retry_after = retry_after  # seconds, from a 503's Retry-After


class RemoteUnreachable(TrussError):
    """Nothing answers at the remote's URL."""


def start_hint(remote_name: str | None) -> str:
    if remote_name in (None, LOCAL_REMOTE):
        return "start it with `truss server start`"
    return "check that it runs and its URL (`truss remote list`), or choose another with --remote"


class Api:
    """A control plane at `url`, called with `api_key`; `remote_name` only shapes the hints."""

    def __init__(self, url: str, api_key: str, remote_name: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.remote_name = remote_name
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Api-Key {api_key}"},
            timeout=_TIMEOUT,
            # A proxy from the environment must not capture a control plane on this machine.
            trust_env=not is_loopback(self.url),
        )

    @classmethod
    def for_remote(cls, remote: Remote) -> "Api":
        return cls(remote.url, remote.api_key, remote.name)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Api":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the server --------------------------------------------------------------------
    def server(self) -> dict[str, Any]:
        return self.request("GET", "/v1/server")

    def stop_server(self, stop_replicas: bool = False) -> dict[str, Any]:
        return self.request("POST", "/v1/server/stop", json={"stop_replicas": stop_replicas})

    # -- blobs and archives --------------------------------------------------------------
    def missing_blobs(self, digests: list[str]) -> list[str]:
        return list(self.request("POST", "/v1/blobs/missing", json={"digests": digests})["missing"])

    def upload_archive(self, archive: BinaryIO, sha256: str, size: int, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Send the archive in `archive` (a file open for reading, at its start) of `size` bytes."""

        def chunks() -> Iterator[bytes]:
            while chunk := archive.read(_UPLOAD_CHUNK):
                yield chunk
                if on_progress is not None:
                    on_progress(len(chunk))

        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            ARCHIVE_SHA256_HEADER: sha256,
        }
        return self.request("POST", "/v1/archives", content=chunks(), headers=headers, timeout=_LONG_TIMEOUT)

    # -- models and deployments -----------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/models")["models"])

    def model(self, model_ref: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/models/{_part(model_ref)}")

    def delete_model(self, model_ref: str) -> dict[str, Any]:
        """Deletes the model and every deployment of it (replicas, builds, stored files)."""
        return self.request("DELETE", f"/v1/models/{_part(model_ref)}")

    def update_model(self, model_ref: str, description: str | None = None, readme: str | None = None) -> dict[str, Any]:
        """Sets the description and/or the README (markdown); the model's name is not editable."""
        body = {key: value for key, value in (("description", description), ("readme", readme)) if value is not None}
        return self.request("PATCH", f"/v1/models/{_part(model_ref)}", json=body)

    def create_deployment(
        self,
        model_ref: str,
        tree_hash: str,
        deployment_name: str | None = None,
        labels: dict[str, Any] | None = None,
        promote: bool = False,
        preserve_previous_production_deployment: bool = False,
        version_bump: str | None = None,
        environment: str | None = None,
    ) -> dict[str, Any]:
        """`version_bump` (MAJOR, MINOR, PATCH) bumps the model's highest version; the server's
        default is MINOR. `environment`: the deployment serves it once ACTIVE."""
        body: dict[str, Any] = {
            "tree_hash": tree_hash,
            "deployment_name": deployment_name,
            "labels": labels or {},
            "promote": promote,
            "preserve_previous_production_deployment": preserve_previous_production_deployment,
        }
        if version_bump is not None:
            body["version_bump"] = version_bump
        if environment is not None:
            body["environment"] = environment
        return self.request("POST", f"/v1/models/{_part(model_ref)}/deployments", json=body)

    def push_development(self, model_ref: str, tree_hash: str, labels: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the model's development deployment, or reuse it: Deployment plus `"action"`
        (`created`, `unchanged`, or `rebuilding` when it runs another tree)."""
        body: dict[str, Any] = {"development": True, "tree_hash": tree_hash, "labels": labels or {}}
        return self.request("POST", f"/v1/models/{_part(model_ref)}/deployments", json=body)

    def deployments(self, model_ref: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/v1/models/{_part(model_ref)}/deployments")["deployments"])

    def deployment(self, model_ref: str, deployment_ref: str) -> dict[str, Any]:
        return self.request("GET", self._deployment_path(model_ref, deployment_ref))

    def delete_deployment(self, model_ref: str, deployment_ref: str) -> dict[str, Any]:
        return self.request("DELETE", self._deployment_path(model_ref, deployment_ref))

    def update_deployment(
        self, model_ref: str, deployment_ref: str, name: str | None = None, labels: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Renames the deployment and/or replaces its labels."""
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if labels is not None:
            body["labels"] = labels
        return self.request("PATCH", self._deployment_path(model_ref, deployment_ref), json=body)

    def deactivate_deployment(self, model_ref: str, deployment_ref: str) -> dict[str, Any]:
        """Stops every replica (in-flight requests finish); DEACTIVATING, then INACTIVE."""
        return self.request("POST", self._deployment_path(model_ref, deployment_ref) + "/deactivate")

    def activate_deployment(self, model_ref: str, deployment_ref: str) -> dict[str, Any]:
        """Starts an inactive deployment again from its stored build (no rebuild)."""
        return self.request("POST", self._deployment_path(model_ref, deployment_ref) + "/activate")

    def retry_deployment(self, model_ref: str, deployment_ref: str) -> dict[str, Any]:
        """Rebuilds a failed deployment from its stored files."""
        return self.request("POST", self._deployment_path(model_ref, deployment_ref) + "/retry")

    def promote_deployment(self, model_ref: str, deployment_ref: str, environment: str | None = None,
                           scale_down_previous: bool | None = None) -> dict[str, Any]:
        """Makes the deployment what `environment` serves (production by default); the answer's
        `previous_deployment` says what became of the one it replaced (`cleanup`)."""
        body: dict[str, Any] = {}
        if environment is not None:
            body["environment"] = environment
        if scale_down_previous is not None:
            body["scale_down_previous_deployment"] = scale_down_previous
        return self.request("POST", self._deployment_path(model_ref, deployment_ref) + "/promote",
                            **({"json": body} if body else {}))

    # -- environments ---------------------------------------------------------------------

    def environments(self, model_ref: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/v1/models/{_part(model_ref)}/environments")["environments"])

    def environment(self, model_ref: str, name: str) -> dict[str, Any]:
        return self.request("GET", self._environment_path(model_ref, name))

    def create_environment(self, model_ref: str, name: str, autoscaling_settings: dict[str, Any] | None = None,
                           promotion_settings: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if autoscaling_settings is not None:
            body["autoscaling_settings"] = autoscaling_settings
        if promotion_settings is not None:
            body["promotion_settings"] = promotion_settings
        return self.request("POST", f"/v1/models/{_part(model_ref)}/environments", json=body)

    def update_environment(self, model_ref: str, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Partial: `changes` holds autoscaling_settings and/or promotion_settings (each itself
        partial). The answer's `status` is ACCEPTED or UNCHANGED."""
        return self.request("PATCH", self._environment_path(model_ref, name), json=changes)

    def delete_environment(self, model_ref: str, name: str) -> dict[str, Any]:
        return self.request("DELETE", self._environment_path(model_ref, name))

    def promote_into_environment(self, model_ref: str, name: str, deployment_ref: str,
                                 scale_down_previous: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"deployment_id": deployment_ref}
        if scale_down_previous is not None:
            body["scale_down_previous_deployment"] = scale_down_previous
        return self.request("POST", self._environment_path(model_ref, name) + "/promote", json=body)

    def _environment_path(self, model_ref: str, name: str) -> str:
        return f"/v1/models/{_part(model_ref)}/environments/{_part(name)}"

    def prune_deployments(self, model_ref: str, keep: int, dry_run: bool = False) -> dict[str, Any]:
        """Deletes all but the newest `keep` deployments that are neither production nor
        development: `{"deleted": [{"id", "name"}], "kept": [...]}`; `dry_run` deletes nothing."""
        body = {"keep": keep, "dry_run": dry_run}
        return self.request("POST", f"/v1/models/{_part(model_ref)}/deployments/prune", json=body)

    # -- patches of the development deployment (docs/live-reload.md) ----------------------
    def stage_patch(self, model_ref: str, deployment_ref: str, envelope: bytes, sync: bool = True) -> dict[str, Any]:
        """Send an envelope (sync/envelope.py); with `sync`, the answer is the sync's plus
        `patch_point`, else `{"patch_point": {"hash", "seq"}}`."""
        path = self._deployment_path(model_ref, deployment_ref) + "/patches"
        headers = {"Content-Type": ENVELOPE_CONTENT_TYPE}
        params = {"sync": "true"} if sync else None
        return self.request("POST", path, content=envelope, headers=headers, params=params, timeout=_LONG_TIMEOUT)

    def patch_state(self, model_ref: str, deployment_ref: str, manifest: bool = False) -> dict[str, Any]:
        """`{"running_patch_point": {"hash"}, "pending_patch_point": {"hash"} | None}`, plus
        `"manifest"` (path -> {sha256, mode}) of pending-else-running when asked."""
        path = self._deployment_path(model_ref, deployment_ref) + "/patches/state"
        return self.request("GET", path, params={"manifest": "1"} if manifest else None)

    def sync_patches(self, model_ref: str, deployment_ref: str) -> dict[str, Any]:
        """Bring the running tree to the pending one: `{"action", "reason", "tree_hash", "ms", ...}`."""
        path = self._deployment_path(model_ref, deployment_ref) + "/patches/sync"
        return self.request("POST", path, timeout=_LONG_TIMEOUT)

    def wake(self, model_id: str, target: str = "development") -> dict[str, Any]:
        """Wake the target if it sleeps, and restart its idle clock (the keep-awake call)."""
        return self.request("POST", f"/model-{_part(model_id)}/{_part(target)}/wake")

    # Autoscaling (issue 11, task B).
    def autoscaling_settings(self, model_ref: str, deployment_ref: str) -> dict[str, Any]:
        return self.request("GET", self._deployment_path(model_ref, deployment_ref) + "/autoscaling_settings")

    def update_autoscaling_settings(self, model_ref: str, deployment_ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        """A partial update: -> {"status": "ACCEPTED" | "UNCHANGED", "autoscaling_settings", ...}."""
        return self.request("PATCH", self._deployment_path(model_ref, deployment_ref) + "/autoscaling_settings",
                            json=changes)

    def _deployment_path(self, model_ref: str, deployment_ref: str) -> str:
        return f"/v1/models/{_part(model_ref)}/deployments/{_part(deployment_ref)}"

    # -- usage ------------------------------------------------------------------------------
    def usage(self, model_ref: str | None = None, since: str | None = None) -> dict[str, Any]:
        """Replica-seconds and requests per deployment (deleted ones marked):
        `{"usage": [...], "since": ISO | None}`."""
        params = {key: value for key, value in (("model", model_ref), ("since", since)) if value is not None}
        return self.request("GET", "/v1/usage", params=params)

    @contextmanager
    def logs(
        self, model_ref: str, deployment_ref: str, since: str | None = None, follow: bool = False, kind: str = "all"
    ) -> Iterator["LogLines"]:
        """The deployment's log lines (`{"at", "source", "text"}`) as they arrive."""
        params: dict[str, str] = {"kind": kind, "follow": "true" if follow else "false"}
        if since is not None:
            params["since"] = since
        path = self._deployment_path(model_ref, deployment_ref) + "/logs"
        with self._calling(path):
            with self._client.stream("GET", path, params=params, timeout=_LONG_TIMEOUT) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield LogLines(response)

    # -- API keys and secrets ----------------------------------------------------------
    def create_api_key(self, scope: str, models: list[str] | None = None, name: str | None = None) -> dict[str, Any]:
        return self.request("POST", "/v1/api_keys", json={"scope": scope, "models": models or [], "name": name})

    def api_keys(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/api_keys")["api_keys"])

    def revoke_api_key(self, prefix: str) -> dict[str, Any]:
        return self.request("DELETE", f"/v1/api_keys/{_part(prefix)}")

    def secrets(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/secrets")["secrets"])

    def set_secret(self, name: str, value: str) -> dict[str, Any]:
        return self.request("POST", "/v1/secrets", json={"name": name, "value": value})

    def delete_secret(self, name: str) -> dict[str, Any]:
        return self.request("DELETE", f"/v1/secrets/{_part(name)}")

    # -- the gateway -----------------------------------------------------------------------
    def predict_url(self, model_id: str, deployment_id: str | None = None, environment: str | None = None) -> str:
        """The gateway's predict URL of a deployment, or of an environment (whichever deployment
        serves it, as the split of a promotion under way says); neither: production."""
        if environment is not None:
            # Production has its own path (the same target as environments/production).
            target = "production" if environment == "production" else f"environments/{_part(environment)}"
        elif deployment_id is None or deployment_id in ("production", "development"):
            target = deployment_id or "production"
        else:
            target = f"deployment/{_part(deployment_id)}"
        return f"{self.url}/model-{_part(model_id)}/{target}/predict"

    @contextmanager
    def predict(self, model_id: str, payload: Any, deployment_id: str | None = None,
                environment: str | None = None) -> Iterator[httpx.Response]:
        """POST `payload` through the gateway; the answer is open for streaming."""
        url = self.predict_url(model_id, deployment_id, environment)
        with self._calling(url):
            with self._client.stream("POST", url, json=payload, timeout=_LONG_TIMEOUT) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield response

    # -- the plumbing ------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._calling(path):
            response = self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise self._error(response)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise TrussError(
                f"{self.url}{path} answered {response.status_code} with something that is not JSON",
                hint="is this URL a truss-cli control plane? (`truss remote list`)",
            ) from None

    @contextmanager
    def _calling(self, path: str) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError as exc:
            host = urlsplit(self.url).hostname or self.url
            if _caused_by(exc, socket.gaierror):
                raise RemoteUnreachable(
                    f"the host name {host!r} of the remote {self.url} does not resolve", hint=start_hint("")
                ) from None
            raise RemoteUnreachable(f"no control plane answers at {self.url}", hint=start_hint(self.remote_name)) from None
        except httpx.TimeoutException:
            raise RemoteUnreachable(f"the control plane at {self.url} did not answer in time ({path})") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise TrussError(f"the connection to {self.url} broke during {path} ({exc})") from None

    def _error(self, response: httpx.Response) -> ApiError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message, code, detail = body["error"], body.get("error_code"), body.get("detail")
            hint = body.get("hint") if isinstance(body.get("hint"), str) else None
            # The gateway's errors put the reason phrase in `error` and what happened in
            # `detail` ("Service Unavailable" / "deployment ... is DEPLOY_FAILED: ..."): say both.
            if isinstance(detail, str) and detail.strip() and detail.strip() not in message:
                label = f"{status} {message}" if message == response.reason_phrase else message
                message = f"{label}: {detail.strip()}"
        else:
            text = response.text.strip()[:500]
            message, code, detail, hint = f"{status} {response.reason_phrase}: {text}".rstrip(": "), None, None, None
        if status == 404 and detail:
            known = describe_detail(detail)
            if known and known not in message:  # a string detail is in the message already
                message = f"{message} ({known})"
        if status == 401 and hint is None:
            hint = "the remote does not know this API key: `truss remote add NAME URL --api-key KEY --replace`"
        elif status == 403 and hint is None:
            hint = "this API key lacks the scope; management commands need an admin key"
        elif status >= 500 and hint is None:
            hint = "the control plane's log has the details (`truss server logs` for the local one)"
        return ApiError(message, status, code, detail, hint, _retry_after(response))


def gateway_target(api: Api, model_ref: str, deployment_ref: str | None) -> tuple[str, str | None]:
    """The ids the gateway's paths take, for a model and deployment given by name or id.

    An invoke key may read the models it may invoke (their id and name), so names resolve,
    but not their deployments: a deployment is then used as given (an id, or `development`).
    An older control plane answers 403 for the model too; its reference is then used as given.
    """
    try:
        model_id = str(api.model(model_ref)["id"])
    except ApiError as exc:
        if exc.status != 403:
            raise
        model_id = model_ref
    if deployment_ref is None or deployment_ref == "production":
        return model_id, None
    try:
        return model_id, str(api.deployment(model_id, deployment_ref)["id"])
    except ApiError as exc:
        if exc.status != 403:
            raise
        return model_id, deployment_ref


def describe_detail(detail: Any) -> str:
    """A 404's detail (what exists) in one line: `known: a, b` or `models: a, b; ...`."""
    if isinstance(detail, list):
        return "known: " + (", ".join(_name_of(item) for item in detail) or "none")
    if isinstance(detail, dict):
        parts = []
        for key, value in detail.items():
            if isinstance(value, list):
                parts.append(f"{key}: " + (", ".join(_name_of(item) for item in value) or "none"))
        # The control plane's `{"existing": [...], "hint": "existing deployments: ..."}` says the
        # list twice: a hint is shown only when no list was.
        for key, value in detail.items():
            if isinstance(value, (str, int, float)) and not (key == "hint" and parts):
                parts.append(f"{key}: {value}")
        return "; ".join(parts)
    if isinstance(detail, str):
        return detail
    return ""


def _name_of(item: Any) -> str:
    if isinstance(item, dict):
        name, ident = item.get("name"), item.get("id")
        if name and ident and name != ident:
            return f"{name} ({ident})"
        return str(name or ident or item)
    return str(item)


class LogLines:
    """An open log stream: iterate for its lines; `interrupt()` (from another thread) ends it.

    A followed replica log never ends by itself, and a thread blocked reading it cannot be
    woken by closing the socket, only by shutting it down.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._interrupted = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in self._response.iter_lines():
                if line.strip():
                    yield json.loads(line)
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if self._interrupted:
                return
            raise TrussError(f"the log stream broke ({exc})") from None

    def interrupt(self) -> None:
        self._interrupted = True
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed: the stream has ended anyway
            pass


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:  # absent, or an HTTP date (not sent by our control plane)
        return None


def _part(value: str) -> str:
    return quote(str(value), safe="")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
