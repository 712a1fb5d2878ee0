"""Where a ledger's archive is: an S3-compatible bucket and prefix, and the command-line options
(`walletnode serve`, `walletctl backup`, `walletctl restore`) that name it. Credentials come from
the environment, as the AWS tools read them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): never from
a command line, where `ps` would show them."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import click


@dataclass(frozen=True)
class S3Location:
    endpoint: str
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    ca_file: str | None = None

    def key(self, name: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{name}" if prefix else name

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')} at {self.endpoint}"


def s3_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--backup-endpoint", envvar="WALLET_BACKUP_ENDPOINT", help="S3 endpoint URL (https://...)"),
        click.option("--backup-bucket", envvar="WALLET_BACKUP_BUCKET", help="Bucket of the archive"),
        click.option(
            "--backup-prefix", envvar="WALLET_BACKUP_PREFIX", default="", help="Prefix of this ledger's archive"
        ),
        click.option("--backup-region", envvar="WALLET_BACKUP_REGION", default="us-east-1", show_default=True),
        click.option(
            "--backup-ca",
            type=click.Path(dir_okay=False, exists=True),
            envvar="WALLET_BACKUP_CA",
            help="CA bundle to verify the endpoint with (default: the system's)",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def location_from(kw: dict[str, Any], required: bool) -> S3Location | None:
    """The location the s3_options name (popped from `kw`); None when no endpoint is given and
    none is `required`."""
    endpoint, bucket = kw.pop("backup_endpoint"), kw.pop("backup_bucket")
    prefix, region, ca_file = kw.pop("backup_prefix"), kw.pop("backup_region"), kw.pop("backup_ca")
    if not endpoint and not required:
        if bucket:
            raise click.UsageError("--backup-bucket needs --backup-endpoint")
        return None
    if not endpoint or not bucket:
        raise click.UsageError("name the object store with --backup-endpoint and --backup-bucket")
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise click.UsageError(f"--backup-endpoint {endpoint!r} is not an http(s) URL")
    return S3Location(
        endpoint,
        bucket,
        prefix,
        region,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        ca_file=ca_file,
    )
