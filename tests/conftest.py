"""Shared fixtures: the real local control plane, started once per test session."""

import os

import pytest

# Read when alibabacloud_credentials is imported: no test may reach for an ECS metadata address.
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"

from rtc_recording.cluster.launcher import LocalCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A real etcd + kube-apiserver; the binaries are built on first use, never skipped."""
    local = LocalCluster.start(tmp_path_factory.mktemp("cluster"))
    try:
        yield local
    finally:
        local.stop()
