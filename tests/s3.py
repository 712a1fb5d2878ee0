"""A real S3-compatible object store for the backup tests: SeaweedFS's `weed server` on loopback
(or, for pods of the local Kubernetes, on the address of its pods' bridge), built from the Go
module proxy by hack/s3/build (`make test` builds it first; cached)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from walletnode.backup.location import S3Location
from walletnode.localcluster import free_ports

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class S3Server:
    """One `weed server` (master, volume, filer and S3 gateway) with one identity that may do
    everything; `location()` names a prefix of its bucket."""

    def __init__(self, base_dir: str, bucket: str = "backups", host: str = "127.0.0.1") -> None:
        self.base_dir = base_dir
        self.bucket = bucket
        self.host = host
        self.access_key = "wallet" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        # Each server also listens on a gRPC port; given explicitly (its default, port + 10000,
        # may be taken or out of range).
        ports = free_ports(9)
        self.port = ports[0]
        self._ports = ports

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def location(self, prefix: str) -> S3Location:
        return S3Location(self.endpoint, self.bucket, prefix, access_key=self.access_key, secret_key=self.secret_key)

    def client(self) -> Any:
        """A boto3 S3 client with the server's identity."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def start(self, timeout: float = 60.0) -> None:
        weed = subprocess.run(
            [os.path.join(REPO, "hack", "s3", "build")], check=True, capture_output=True, text=True
        ).stdout.strip()
        data = os.path.join(self.base_dir, "data")
        os.makedirs(data, exist_ok=True)
        config = os.path.join(self.base_dir, "identities.json")
        with open(config, "w") as f:
            json.dump(
                {
                    "identities": [
                        {
                            "name": "wallet",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                },
                f,
            )
        p = self._ports
        with open(os.path.join(self.base_dir, "weed.log"), "ab") as log:  # the child keeps it open
            self.process = subprocess.Popen(
                [
                    weed,
                    "server",
                    f"-dir={data}",
                    f"-ip={self.host}",
                    f"-ip.bind={self.host}",
                    f"-master.port={p[1]}",
                    f"-master.port.grpc={p[2]}",
                    "-master.telemetry=false",
                    "-master.volumeSizeLimitMB=1024",
                    f"-volume.port={p[3]}",
                    f"-volume.port.grpc={p[4]}",
                    "-filer",
                    f"-filer.port={p[5]}",
                    f"-filer.port.grpc={p[6]}",
                    "-s3",
                    f"-s3.port={self.port}",
                    f"-s3.port.grpc={p[7]}",
                    f"-s3.config={config}",
                    f"-iam.port={p[8]}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
            )
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.create_bucket(Bucket=self.bucket)
                return
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return
                last: Exception = exc
            except botocore.exceptions.BotoCoreError as exc:
                last = exc
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the S3 server did not start: {last}\n{self.tail()}")
            time.sleep(0.3)

    def tail(self, lines: int = 30) -> str:
        try:
            with open(os.path.join(self.base_dir, "weed.log"), "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGKILL: `weed` takes seconds to stop on SIGTERM, and nothing of it needs to survive."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
