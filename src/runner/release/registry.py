"""Registry operations over the OCI distribution API, for both engines: resolve a tag, read and write
manifests by digest (a -dev index is written from the tested single-arch digests, never rebuilt),
list tags and delete one tag.

Answers are classified by HTTP status and the registry's error code, never by searching text: only
the registry's own not-found answer is "not found"; connection faults, timeouts, 429 and 5xx are
retried with backoff within a time budget (each retry is recorded), and when they persist they are an
InfrastructureError (exit code 3); anything else is an error with the registry's message. Every answer
is read within a time limit and a size limit (MAX_BODY), so a registry that drips, floods or hangs
cannot hold runner or fill its memory. Credentials live in this process's memory only.

The API deletes manifests, not tags, and a manifest may carry several tags (a final tag and its -dev
twin after promotion). So a tag is deleted by pointing it at a tiny tombstone manifest of its own and
deleting that; before any such write, `delete_supported` asks whether the registry deletes at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx

from runner.model.errors import Failed, InfrastructureError, UserError

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[:2]
_NOT_FOUND_CODES = {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN", "TAG_UNKNOWN"}
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_HUB = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}
MAX_BODY = 4 * 1024 * 1024  # bytes of one answer: the distribution spec's manifest limit; tags come in pages
_DROPPED = {"content-encoding", "content-length", "transfer-encoding"}  # the body kept is already decoded


class RegistryError(Failed):
    """A registry answered with an error (or could not be reached within the retry budget)."""

    def __init__(self, what: str, status: int | None = None, detail: str = "") -> None:
        self.status = status
        text = f"{what}: " + (f"HTTP {status}" if status else "no answer") + (f": {detail}" if detail else "")
        super().__init__(text)


class RegistryFault(RegistryError, InfrastructureError):
    """The registry kept failing (no answer, timeouts, 429, 5xx) past the retries, or answered beyond
    the size limit or with something that is not the API's: a fault of the registry or of the way
    there, not of the input (exit code 3)."""

    exit_code = 3


class NotFound(Exception):
    """The registry's own answer: no such manifest, blob or repository."""


@dataclass(frozen=True)
class Manifest:
    body: bytes
    media_type: str
    digest: str

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or '"manifests"' in self.body.decode("utf-8", "replace")[:4000]


def split_reference(ref: str) -> tuple[str, str, str]:
    """`host[:port]/repo/path:tag` or `...@sha256:...` -> (host, repository, tag or digest)."""
    name, at, digest = ref.partition("@")
    host, _, rest = name.partition("/")
    if not rest or ("." not in host and ":" not in host and host != "localhost"):
        raise UserError("an image reference needs a registry host", value=ref, hint="e.g. docker.io/gpustack/runner:TAG")
    if at:
        return host, rest.rsplit(":", 1)[0] if ":" in rest.rsplit("/", 1)[-1] else rest, digest
    repo, sep, tag = rest.rpartition(":")
    if not sep or "/" in tag:
        raise UserError("an image reference needs a tag", value=ref)
    return host, repo, tag


@dataclass
class Registry:
    """One registry host, with the credentials of this run (the password stays in memory)."""

    host: str
    username: str = ""
    password: str = field(default="", repr=False)
    insecure: bool = False  # plain HTTP, for a local test registry
    retry_seconds: float = 45.0  # how long transient faults are retried, in all, per request
    timeout: float = 30.0  # one attempt, body included: a registry that drips is cut off here
    retries: list[str] = field(default_factory=list)  # one line per retried request, for the report
    _client: httpx.AsyncClient | None = field(default=None, repr=False)
    _auth: dict[str, str] = field(default_factory=dict, repr=False)  # scope -> Authorization header

    @property
    def plain_http(self) -> bool:
        """Plain HTTP when asked, and for loopback registries (as Docker treats them by default)."""
        name = self.host.rsplit(":", 1)[0] if self.host.count(":") == 1 else self.host
        return self.insecure or name in ("localhost", "[::1]") or name.startswith("127.")

    @property
    def base(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{_HUB.get(self.host, self.host)}/v2"

    async def __aenter__(self) -> Registry:
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=10.0), follow_redirects=True)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the API -----------------------------------------------------------------------------

    async def login(self) -> None:
        """Check the credentials before anything is changed: a refusal is the user's to fix."""
        r = await self._request("GET", "/", scope="")
        if r.status_code in (401, 403):
            raise UserError(f"the registry {self.host} refused the credentials of {self.username or 'anonymous'}",
                            hint="check --username and the password variable")
        self._raise_for(r, f"log in to {self.host}")

    async def manifest(self, repo: str, reference: str) -> Manifest | None:
        """The manifest (or index) a tag or digest names, or None when the registry has none."""
        r = await self._request("GET", f"/{repo}/manifests/{reference}", scope=repo,
                                headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if _not_found(r):
            return None
        self._raise_for(r, f"read {repo}:{reference}")
        digest = "sha256:" + hashlib.sha256(r.content).hexdigest()
        return Manifest(r.content, r.headers.get("content-type", "").split(";")[0], digest)

    async def digest(self, repo: str, reference: str) -> str | None:
        found = await self.manifest(repo, reference)
        return found.digest if found else None

    async def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        """Write a manifest; returns the digest the registry says it stored."""
        r = await self._request("PUT", f"/{repo}/manifests/{reference}", scope=repo, push=True, content=body,
                                headers={"Content-Type": media_type})
        self._raise_for(r, f"write {repo}:{reference}")
        return r.headers.get("docker-content-digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    async def tags(self, repo: str) -> list[str]:
        found: list[str] = []
        path: str | None = f"/{repo}/tags/list?n=1000"
        while path:
            r = await self._request("GET", path, scope=repo)
            if _not_found(r):
                return []
            self._raise_for(r, f"list the tags of {repo}")
            page = _json(r, f"the tag list of {repo}").get("tags") or []
            found += [t for t in page if isinstance(t, str)] if isinstance(page, list) else []
            nxt = re.search(r"<([^>]+)>;\s*rel=\"?next\"?", r.headers.get("link", ""))
            path = nxt[1].split("/v2", 1)[-1] if nxt else None
        return sorted(set(found))

    async def delete_supported(self, repo: str) -> bool:
        """Whether the registry deletes manifests: deleting a digest nobody has is answered 404 (or
        202) where deletion works, and 405, 401/403 or UNSUPPORTED where it does not."""
        probe = "sha256:" + hashlib.sha256(f"runner-probe-{random.random()}".encode()).hexdigest()
        r = await self._request("DELETE", f"/{repo}/manifests/{probe}", scope=repo, push=True)
        if r.status_code in (202, 404):
            return True
        if r.status_code in (400, 401, 403, 405) or _codes(r) & {"UNSUPPORTED", "DENIED"}:
            return False
        self._raise_for(r, f"ask {self.host} whether it deletes")
        return True

    async def delete_tag(self, repo: str, tag: str) -> None:
        """Remove one tag, leaving other tags of the same digest in place (see the module docstring).
        Call `delete_supported` first: a refused DELETE here leaves the tag on the tombstone."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                             "config": {"Labels": {"io.gpustack.runner.tombstone": f"{repo}:{tag}"}}},
                            sort_keys=True).encode()
        config_digest = await self.upload_blob(repo, config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPES[2], "layers": [],
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": config_digest, "size": len(config)}}, sort_keys=True).encode()
        digest = await self.put_manifest(repo, tag, manifest, MANIFEST_TYPES[2])
        r = await self._request("DELETE", f"/{repo}/manifests/{digest}", scope=repo, push=True)
        if not _not_found(r):
            self._raise_for(r, f"delete {repo}:{tag}")

    async def upload_blob(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        head = await self._request("HEAD", f"/{repo}/blobs/{digest}", scope=repo)
        if head.status_code == 200:
            return digest
        start = await self._request("POST", f"/{repo}/blobs/uploads/", scope=repo, push=True)
        self._raise_for(start, f"start a blob upload to {repo}")
        location = start.headers.get("location", "")
        if not location:
            raise RegistryError(f"start a blob upload to {repo}", start.status_code, "no Location in the answer")
        url = location if location.startswith("http") else f"{self.base.rsplit('/v2', 1)[0]}{location}"
        url += ("&" if "?" in url else "?") + f"digest={digest}"  # keep the upload's own query (its state)
        put = await self._request("PUT", url, scope=repo, push=True, content=data,
                                  headers={"Content-Type": "application/octet-stream"})
        self._raise_for(put, f"upload a blob to {repo}")
        return digest

    async def index_manifest(self, repo: str, members: Sequence[tuple[str, str]]) -> tuple[bytes, str]:
        """The multi-arch index (body, media type) whose entries are exactly the given (platform,
        digest) manifests, already in `repo`: the digests that were tested, never rebuilt."""
        entries, kinds = [], set()
        for platform, digest in members:
            found = await self.manifest(repo, digest)
            if found is None:
                raise RegistryError(f"index the {platform} image {repo}@{digest}", 404, "the manifest is gone")
            kinds.add(found.media_type)
            os_, _, arch = platform.partition("/")
            plat = {"architecture": arch, "os": os_, **({"variant": "v8"} if arch == "arm64" else {})}
            entries.append({"mediaType": found.media_type, "digest": digest, "size": len(found.body), "platform": plat})
        media_type = INDEX_TYPES[1] if kinds <= {MANIFEST_TYPES[3]} else INDEX_TYPES[0]
        body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}, indent=3).encode()
        return body, media_type

    # -- OCI 1.1 referrers, and copies between repositories (runner.release.referrers, .mirror) --

    async def referrers_api(self, repo: str, digest: str) -> list[dict] | None:
        """The referrers API's descriptors for a digest, or None where the registry has no such API
        (its answer is a 404 or 405 without an index): then the referrers tag scheme holds them."""
        r = await self._request("GET", f"/{repo}/referrers/{digest}", scope=repo, headers={"Accept": INDEX_TYPES[0]})
        if r.status_code in (404, 405):
            return None
        self._raise_for(r, f"list the referrers of {repo}@{digest}")
        if not r.headers.get("content-type", "").startswith(INDEX_TYPES[0]):
            return None  # something that is not the API answered
        return list(r.json().get("manifests") or [])

    async def blob(self, repo: str, digest: str) -> bytes | None:
        """A small blob (an SBOM, an envelope), checked against its digest; None when it is not there."""
        r = await self._request("GET", f"/{repo}/blobs/{digest}", scope=repo)
        if _not_found(r):
            return None
        self._raise_for(r, f"read the blob {repo}@{digest}")
        if "sha256:" + hashlib.sha256(r.content).hexdigest() != digest:
            raise RegistryError(f"read the blob {repo}@{digest}", r.status_code, "its content does not match its digest")
        return r.content

    async def has_blob(self, repo: str, digest: str) -> bool:
        r = await self._request("HEAD", f"/{repo}/blobs/{digest}", scope=repo)
        return r.status_code == 200

    async def mount_blob(self, repo: str, digest: str, source_repo: str) -> bool:
        """Link a blob of another repository of this registry into `repo` without copying bytes."""
        r = await self._request("POST", f"/{repo}/blobs/uploads/?mount={digest}&from={source_repo}", scope=repo,
                                push=True)
        return r.status_code == 201

    @asynccontextmanager
    async def blob_stream(self, repo: str, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """A large blob's bytes as they arrive (a layer of many GB is never held in memory)."""
        assert self._client is not None, "use `async with Registry(...)`"
        await self._raise_missing(repo, digest)  # also settles the credentials for the scope
        key = f"{repo}:pull"
        headers = {"Authorization": self._auth[key]} if key in self._auth else {}
        async with self._client.stream("GET", f"{self.base}/{repo}/blobs/{digest}", headers=headers) as r:
            self._raise_for(r, f"read the blob {repo}@{digest}")
            yield r.aiter_bytes(1 << 20)

    async def put_blob_stream(self, repo: str, digest: str, chunks: AsyncIterator[bytes]) -> None:
        """Upload a blob from a stream in one request (not retried: run the copy again to finish it)."""
        start = await self._request("POST", f"/{repo}/blobs/uploads/", scope=repo, push=True)
        self._raise_for(start, f"start a blob upload to {repo}")
        location = start.headers["location"]
        url = location if location.startswith("http") else f"{self.base.rsplit('/v2', 1)[0]}{location}"
        url += ("&" if "?" in url else "?") + f"digest={digest}"
        assert self._client is not None
        key = f"{repo}:push"
        headers = {"Content-Type": "application/octet-stream", **({"Authorization": self._auth[key]}
                                                                    if key in self._auth else {})}
        put = await self._client.put(url, content=chunks, headers=headers)
        self._raise_for(put, f"upload the blob {digest} to {repo}")

    async def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete one manifest by digest (an artifact no tag names); gone already is fine."""
        r = await self._request("DELETE", f"/{repo}/manifests/{digest}", scope=repo, push=True)
        if not _not_found(r):
            self._raise_for(r, f"delete {repo}@{digest}")

    async def _raise_missing(self, repo: str, digest: str) -> None:
        r = await self._request("HEAD", f"/{repo}/blobs/{digest}", scope=repo)
        if r.status_code == 404:
            raise RegistryError(f"read the blob {repo}@{digest}", 404, "the registry has no such blob")
        self._raise_for(r, f"read the blob {repo}@{digest}")

    # -- HTTP with auth and retries -----------------------------------------------------------

    async def _request(self, method: str, path: str, *, scope: str, push: bool = False,
                       **kwargs) -> httpx.Response:
        """A request with this run's credentials for `scope` (asked for once, on the first challenge)."""
        assert self._client is not None, "use `async with Registry(...)`"
        url = path if path.startswith("http") else self.base + path
        key = f"{scope}:{'push' if push else 'pull'}"
        extra = kwargs.pop("headers", {})
        while True:
            headers = {**extra, **({"Authorization": self._auth[key]} if key in self._auth else {})}
            r = await self._retrying(method, url, headers=headers, **kwargs)
            if r.status_code == 401 and key not in self._auth and (self.username or self.password):
                self._auth[key] = await self._authorize(r, scope, push)
                continue
            return r

    async def _retrying(self, method: str, url: str, **kwargs) -> httpx.Response:
        """One request, retried with backoff on connection faults, timeouts, 429 and 5xx within
        `retry_seconds`; the last transient answer is returned when the budget is spent (its status
        then raises RegistryFault in _raise_for), a persistent lack of answer raises it here."""
        deadline = time.monotonic() + self.retry_seconds
        attempt, first = 0, time.monotonic()
        what = f"{method} {url.split('?')[0]}"
        while True:
            try:
                r, fault = await self._attempt(method, url, **kwargs), ""
            except (httpx.TransportError, httpx.TimeoutException, TimeoutError) as e:
                r, fault = None, f"{type(e).__name__}: {e}" if str(e) else f"nothing within {self.timeout:.0f}s"
            else:
                fault = f"HTTP {r.status_code}" if r.status_code in _TRANSIENT_STATUS else ""
            if not fault:
                return r  # type: ignore[return-value]
            attempt += 1
            wait = min(8.0, 0.25 * 2 ** attempt) * (0.5 + random.random() / 2)
            if r is not None and (after := r.headers.get("retry-after", "")).isdigit():
                wait = max(wait, min(float(after), 30.0))
            if time.monotonic() + wait > deadline:
                if r is None:
                    raise RegistryFault(f"{what}: {attempt} attempts over {time.monotonic() - first:.0f}s",
                                              None, fault)
                return r
            self.retries.append(f"{what.split(self.host, 1)[-1]}: {fault}; retry {attempt} in {wait:.1f}s")
            await anyio.sleep(wait)

    async def _attempt(self, method: str, url: str, **kwargs) -> httpx.Response:
        """One round trip within `timeout`, its body read up to MAX_BODY (more is refused, not retried)."""
        assert self._client is not None
        with anyio.fail_after(self.timeout):
            async with self._client.stream(method, url, **kwargs) as r:
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise RegistryFault(f"{method} {url.split('?')[0]}", r.status_code,
                                                  f"the answer is larger than {MAX_BODY} bytes; refused")
                headers = [(k, v) for k, v in r.headers.multi_items() if k.lower() not in _DROPPED]
                return httpx.Response(r.status_code, headers=headers, content=bytes(body), request=r.request)

    async def _authorize(self, r: httpx.Response, scope: str, push: bool) -> str:
        """The Authorization header a 401 challenge asks for: Basic, or a Bearer token for the scope."""
        challenge = r.headers.get("www-authenticate", "")
        basic = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if not challenge.lower().startswith("bearer"):
            return basic
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"log in to {self.host}", r.status_code, f"a token challenge without a usable realm: {realm!r}")
        if scope:
            params["scope"] = f"repository:{scope}:pull" + (",push,delete" if push else "")
        t = await self._retrying("GET", realm, params=params, headers={"Authorization": basic})
        if t.status_code in (401, 403):
            raise UserError(f"the registry {self.host} refused the credentials of {self.username}")
        self._raise_for(t, f"get a token from {realm}")
        answer = _json(t, f"the token from {realm}")
        token = answer.get("token") or answer.get("access_token", "")
        if not isinstance(token, str) or not token:
            raise RegistryFault(f"get a token from {realm}", t.status_code, "the answer holds no token")
        return f"Bearer {token}"

    @staticmethod
    def _raise_for(r: httpx.Response, what: str) -> None:
        if r.status_code < 400:
            return
        if r.status_code in (401, 403):
            raise UserError(f"{what}: the registry refused (HTTP {r.status_code}: {_message(r)})",
                            hint="check the credentials and that this user may push and delete")
        if r.status_code in _TRANSIENT_STATUS:
            raise RegistryFault(what, r.status_code, _message(r) + " (retried; it persisted)")
        raise RegistryError(what, r.status_code, _message(r))


def _json(r: httpx.Response, what: str) -> dict:
    """An answer's JSON object, or a RegistryError saying the registry sent something else."""
    try:
        found = r.json()
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise RegistryFault(f"read {what}", r.status_code, "the answer is not a JSON object")
    return found


def _codes(r: httpx.Response) -> set[str]:
    try:
        return {str(e.get("code", "")) for e in r.json().get("errors", [])}
    except (ValueError, AttributeError, TypeError):
        return set()


def _not_found(r: httpx.Response) -> bool:
    """The registry's own not-found answer: 404 with a not-found error code, or a bare 404 to a GET."""
    if r.status_code != 404:
        return False
    codes = _codes(r)
    return not codes or bool(codes & _NOT_FOUND_CODES)


def _message(r: httpx.Response) -> str:
    try:
        errors = r.json().get("errors") or []
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors) or r.text[:300]
    except (ValueError, AttributeError, TypeError):
        return r.text[:300].strip() or r.reason_phrase
