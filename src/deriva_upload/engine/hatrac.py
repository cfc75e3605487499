"""Hatrac object operations over the shared transport: HEAD, PUT, chunked jobs.

Paths given here are already percent-encoded Hatrac paths (``/hatrac/ns/obj``).
Requests whose repetition leaves a trace (object PUT: a second version; job create: an
orphan job; finalize) are never repeated blindly after a lost answer: the effect is
looked for first (HEAD and compare digests; list the object's open jobs) and adopted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from deriva_upload.engine.items import Digests
from deriva_upload.engine.transport import Transport
from deriva_upload.errors import ServerError

# Statuses of a HEAD that mean "no usable object here, upload it" (deriva-py treats
# every 4xx like this: missing name, namespace, job in progress, forbidden version).
_HEAD_MISSING = (400, 403, 404, 405, 409, 410)


@dataclass(frozen=True)
class ObjectInfo:
    """What HEAD says about the current version of an object."""

    location: str | None
    md5_b64: str | None
    sha256_b64: str | None
    length: int | None

    def same_content(self, digests: Digests) -> bool:
        """deriva-py's skip test: either digest equal (as base64 strings)."""
        return bool((self.md5_b64 and self.md5_b64 == digests.md5_b64)
                    or (self.sha256_b64 and self.sha256_b64 == digests.sha256_b64))

    def matches(self, digests: Digests) -> bool:
        """Stricter test for ``verify``: every digest the server reports is equal."""
        if not (self.md5_b64 or self.sha256_b64):
            return False
        return ((self.md5_b64 is None or self.md5_b64 == digests.md5_b64)
                and (self.sha256_b64 is None or self.sha256_b64 == digests.sha256_b64))


def _strip_origin(text: str) -> str:
    """A version path from a response body (deriva-py drops a leading scheme://host)."""
    text = text.strip()
    if "://" in text:
        rest = text.split("://", 1)[1]
        text = "/" + rest.split("/", 1)[1] if "/" in rest else text
    return text


def _info(resp: httpx.Response) -> ObjectInfo:
    h = resp.headers
    length = h.get("Content-Length")
    loc = h.get("Content-Location")
    return ObjectInfo(location=_strip_origin(loc) if loc else None, md5_b64=h.get("Content-MD5"),
                      sha256_b64=h.get("Content-SHA256"), length=int(length) if length and length.isdigit() else None)


def object_headers(digests: Digests, content_type: str, disposition: str | None) -> dict[str, str]:
    """The headers GenericUploader sends with an object PUT."""
    headers = {"Content-Type": content_type, "Content-MD5": digests.md5_b64, "Content-SHA256": digests.sha256_b64}
    if disposition:
        headers["Content-Disposition"] = disposition
    return headers


def job_body(size: int, chunk_length: int, digests: Digests, content_type: str,
             disposition: str | None) -> dict[str, Any]:
    """The JSON of a chunked-upload job creation (protocol §4.5)."""
    body: dict[str, Any] = {"chunk-length": chunk_length, "content-length": size, "content-type": content_type,
                            "content-md5": digests.md5_b64, "content-sha256": digests.sha256_b64}
    if disposition:
        body["content-disposition"] = disposition
    return body


def n_chunks(size: int, chunk_length: int) -> int:
    return (size + chunk_length - 1) // chunk_length


class HatracClient:
    """Object-store calls of one upload run."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def head(self, path: str) -> ObjectInfo | None:
        """The object's current version info, or None when there is no usable object."""
        resp = await self.transport.request("HEAD", path, expect=(200,) + _HEAD_MISSING)
        if resp.status_code != 200:
            return None
        return _info(resp)

    async def put(self, path: str, data: bytes | Callable[[], AsyncIterator[bytes]], size: int, digests: Digests,
                  content_type: str, disposition: str | None) -> str:
        """Create a new version with one PUT; returns the version path.

        A repeated PUT would store a second, identical version, so a PUT whose answer was
        lost is not repeated blindly: if HEAD shows our bytes as the current version, that
        version is the result. ``data`` must be replayable (bytes or a stream factory).
        """
        headers = object_headers(digests, content_type, disposition)
        headers["Content-Length"] = str(size)
        resp = await self._request_adopting("PUT", f"{path}?parents=true", lambda: self._adopt_object(path, digests),
                                            content=data, headers=headers)
        return _strip_origin(resp.text) or path

    async def create_job(self, path: str, size: int, chunk_length: int, digests: Digests, content_type: str,
                         disposition: str | None) -> str:
        """Open a chunked upload job; returns the job path (``...;upload/<JOB>``).

        Job creation is not idempotent: a POST whose answer was lost may have opened a job.
        Before creating again we adopt an open job of the same object with the same length
        and digests, so a lost answer costs one listing instead of an orphan job.
        """
        body = job_body(size, chunk_length, digests, content_type, disposition)

        async def adopt() -> httpx.Response | None:
            job = await self.find_job(path, size, digests)
            return httpx.Response(201, text=job + "\n") if job else None

        resp = await self._request_adopting(
            "POST", f"{path};upload?parents=true", adopt, content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        job = _strip_origin(resp.text) or resp.headers.get("Location", "")
        if ";upload/" not in job:
            raise ServerError(f"POST {path};upload answered without a job path: {resp.text[:200]!r}")
        return _strip_origin(job)

    async def _request_adopting(self, method: str, url: str, adopt: Callable[[], Any], *,
                                content: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """Send a request whose repetition would leave a trace (a job, a version) at most once.

        On an ambiguous failure (the answer was lost, maybe after the server acted) the
        transport calls ``adopt``, which looks for the effect and answers for it; only when
        there is none is the request sent again, with the policy's back-off.
        """
        return await self.transport.request(method, url, content=content, headers=headers, idempotent=False,
                                            recover=adopt, expect=(200, 201))

    async def _adopt_object(self, path: str, digests: Digests) -> httpx.Response | None:
        """A current version of ``path`` holding exactly these bytes, as a create answer."""
        info = await self.head(path)
        if info is not None and info.location and info.same_content(digests):
            return httpx.Response(201, text=info.location + "\n")
        return None

    async def find_job(self, path: str, size: int, digests: Digests) -> str | None:
        """An open job on ``path`` for exactly these bytes (length and digests), if any."""
        resp = await self.transport.request("GET", f"{path};upload", headers={"Accept": "application/json"},
                                            expect=(200, 404, 409))
        if resp.status_code != 200:
            return None
        try:
            jobs = resp.json()
        except ValueError:
            return None
        for job in jobs if isinstance(jobs, list) else []:
            doc = await self.job_status(_strip_origin(str(job)))
            if doc and doc.get("content-length") == size and doc.get("content-md5") in (None, digests.md5_b64) \
                    and doc.get("content-sha256") in (None, digests.sha256_b64) and doc.get("content-md5"):
                return _strip_origin(str(doc.get("url") or job))
        return None

    async def job_status(self, job: str) -> dict[str, Any] | None:
        """The job's status document, or None when the job is gone (finished or cancelled)."""
        resp = await self.transport.request("GET", job, headers={"Accept": "application/json"},
                                            expect=(200, 404, 409, 410))
        if resp.status_code != 200:
            return None
        try:
            doc = resp.json()
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    async def put_chunk(self, job: str, index: int, data: bytes | Callable[[], AsyncIterator[bytes]],
                        length: int) -> None:
        """Send chunk ``index`` (re-sending a chunk is allowed, so retries are safe)."""
        await self.transport.request("PUT", f"{job}/{index}", content=data,
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Length": str(length)},
                                     expect=(200, 201, 204))

    async def finalize(self, job: str, path: str, digests: Digests) -> str:
        """Finish the job; returns the new version path.

        Finalize is not idempotent: if its answer is lost, HEAD the object and accept a
        current version with our digests instead of finalizing again.
        """
        resp = await self._request_adopting("POST", job, lambda: self._adopt_object(path, digests))
        return _strip_origin(resp.text) or path

    async def cancel(self, job: str) -> None:
        await self.transport.request("DELETE", job, expect=(200, 204, 404, 409))
