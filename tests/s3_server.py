"""pytest plugin: a real S3 API over HTTP (moto in server mode) for contract and
integration tests.

moto runs as a child process (``python -m moto.server``) rather than a thread in the test
process: its warnings, logs and thread crashes then cannot trip ``filterwarnings =
error`` or pytest's thread-exception hooks, and boto3 talks to it over real loopback HTTP
exactly as it talks to S3.

Fixtures:
    aws_credentials  (session)  dummy AWS credentials and no config files, so boto3 never
                                finds real ones; every S3 test depends on it
    s3_endpoint      (session)  the server's endpoint URL, e.g. ``http://127.0.0.1:40123``
    s3_client        (session)  a raw boto3 S3 client for that endpoint (to set up or
                                tamper with objects behind a store's back)
    s3_bucket_url    (function) ``s3://<fresh random bucket>/<random prefix>``, emptied
                                and deleted afterwards

This plugin must never skip: if moto cannot start, the fixture fails the test.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["aws_credentials", "s3_bucket_url", "s3_client", "s3_endpoint"]

S3_REGION = "us-east-1"
_START_TIMEOUT_S = 30.0
_START_ATTEMPTS = 3


@pytest.fixture(scope="session")
def aws_credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials and region; hides the user's AWS config and any proxy."""
    missing = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", S3_REGION)
        mp.setenv("AWS_CONFIG_FILE", str(missing))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        # A proxy from the environment would swallow loopback requests.
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))
        mp.setenv("NO_PROXY", no_proxy)
        mp.setenv("no_proxy", no_proxy)
        yield


@pytest.fixture(scope="session")
def s3_endpoint(aws_credentials: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start moto's S3 server on a free loopback port; its endpoint URL."""
    logs = tmp_path_factory.mktemp("moto")
    proc, endpoint = _start_moto(logs)
    try:
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> S3Client:
    """A raw boto3 client for the moto server (bypasses any blob store)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=S3_REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 2}),
    )


@pytest.fixture
def s3_bucket_url(s3_client: S3Client) -> Iterator[str]:
    """A fresh bucket (random name) and key prefix, as ``s3://bucket/prefix``."""
    bucket = f"flowmesh-test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/t-{uuid.uuid4().hex[:8]}"
    _delete_bucket(s3_client, bucket)


def _start_moto(logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    # A free port can be taken between our probe and moto's bind; retry on that race.
    failures: list[str] = []
    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        log_path = logs / f"moto-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        endpoint = f"http://127.0.0.1:{port}"
        if _wait_ready(proc, port):
            return proc, endpoint
        proc.kill()
        proc.wait(timeout=10)
        output = log_path.read_text(errors="replace")[-2000:] or "(no output)"
        failures.append(f"port {port}, exit code {proc.returncode}: {output}")
    pytest.fail("moto S3 server did not start:\n" + "\n".join(failures), pytrace=False)


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> bool:
    """True once moto answers its own API on ``port`` (not just any listener there)."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/moto-api/data.json")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _delete_bucket(client: S3Client, bucket: str) -> None:
    """Empty and delete ``bucket`` so the moto process does not accumulate blobs."""
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [obj["Key"] for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    client.delete_bucket(Bucket=bucket)
