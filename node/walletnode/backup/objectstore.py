"""Where backups go: an S3-compatible object store, behind the small `ObjectStore` Protocol.

Everything the archive does is put, get, list by prefix and delete of whole objects, plus one
streamed upload (a base backup is too large to hold in memory): that is the Protocol, and
`S3Store` is boto3 under it. Errors surface as `ObjectStoreError` with the store's own message
(wrong credentials, no such bucket, unreachable endpoint), so that a node or the operator can
say exactly what is wrong.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import boto3
import botocore.config
import botocore.exceptions

from .location import S3Location

#: A streamed upload is sent in parts of this size (S3 allows at most 10,000 parts: 640 GiB).
PART_BYTES = 64 << 20


class ObjectStoreError(Exception):
    """The object store refused or could not be reached; the message says which and why."""


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Upload the concatenated chunks as one object; returns its size."""
        ...

    def get(self, key: str) -> bytes: ...

    def get_stream(self, key: str) -> Iterator[bytes]: ...

    def listing(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object whose key starts with `prefix`, in key order."""
        ...

    def delete(self, keys: list[str]) -> None: ...


def _explain(location: S3Location, exc: Exception) -> ObjectStoreError:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        what = f"{error.get('Code', 'error')}: {error.get('Message', '') or exc}"
    elif isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError):
        what = f"cannot reach the object store: {exc}"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return ObjectStoreError(f"{location.describe()}: {what}")


class S3Store:
    """`ObjectStore` over boto3, for one location; keys are relative to its prefix."""

    def __init__(self, location: S3Location, timeout_s: float = 10.0) -> None:
        self.location = location
        self._s3 = boto3.client(
            "s3",
            endpoint_url=location.endpoint,
            region_name=location.region,
            aws_access_key_id=location.access_key or None,
            aws_secret_access_key=location.secret_key or None,
            verify=location.ca_file if location.ca_file else True,
            config=botocore.config.Config(
                connect_timeout=timeout_s,
                read_timeout=4 * timeout_s,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    def _call(self, method: str, **kw: Any) -> Any:
        try:
            return getattr(self._s3, method)(Bucket=self.location.bucket, **kw)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _explain(self.location, exc) from exc

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self.location.key(key), Body=data)

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        full = self.location.key(key)
        upload = self._call("create_multipart_upload", Key=full)["UploadId"]
        parts: list[dict[str, Any]] = []
        size = 0
        try:
            for number, part in enumerate(_parts(chunks, PART_BYTES), start=1):
                sent = self._call("upload_part", Key=full, UploadId=upload, PartNumber=number, Body=part)
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})
                size += len(part)
            if not parts:  # an empty object still needs one part
                sent = self._call("upload_part", Key=full, UploadId=upload, PartNumber=1, Body=b"")
                parts.append({"PartNumber": 1, "ETag": sent["ETag"]})
            self._call("complete_multipart_upload", Key=full, UploadId=upload, MultipartUpload={"Parts": parts})
        except BaseException:
            # What cannot be aborted, the bucket's lifecycle rules clean up.
            with contextlib.suppress(ObjectStoreError):
                self._call("abort_multipart_upload", Key=full, UploadId=upload)
            raise
        return size

    def get(self, key: str) -> bytes:
        body = self._call("get_object", Key=self.location.key(key))["Body"]
        try:
            return bytes(body.read())
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise _explain(self.location, exc) from exc

    def get_stream(self, key: str) -> Iterator[bytes]:
        body = self._call("get_object", Key=self.location.key(key))["Body"]
        try:
            yield from body.iter_chunks(1 << 20)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise _explain(self.location, exc) from exc

    def listing(self, prefix: str) -> list[tuple[str, int]]:
        full, strip = self.location.key(prefix), len(self.location.key(""))
        out = []
        token: dict[str, str] = {}
        while True:
            page = self._call("list_objects_v2", Prefix=full, **token)
            out += [(item["Key"][strip:], int(item["Size"])) for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(out)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self.location.key(k)} for k in keys[start : start + 1000]]
            answer = self._call("delete_objects", Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise ObjectStoreError(f"{self.location.describe()}: cannot delete {first.get('Key')}: {first}")


def _parts(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup a stream of chunks into parts of exactly `size` bytes (the last may be shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
