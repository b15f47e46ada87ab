"""Shared fixtures: the real local control plane, started once per test session."""

import os

import pytest

# Read when alibabacloud_credentials is imported: no test may reach for an ECS metadata address.
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"

from rtc_recording.cluster import binaries
from rtc_recording.cluster.launcher import LocalCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A real etcd + kube-apiserver; the binaries are built on first use, never skipped."""
    local = LocalCluster.start(tmp_path_factory.mktemp("cluster"))
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def cluster_of(cluster, tmp_path_factory):
    """cluster_of(version): a control plane of that Kubernetes version (binaries.KUBERNETES_VERSIONS).
    The default version's is `cluster`; another starts on first use and runs to the end of the
    session, so the API corpus and the smoke tests of one version share it."""
    started = {binaries.KUBERNETES_VERSION: cluster}

    def of(version: str) -> LocalCluster:
        if version not in started:
            started[version] = LocalCluster.start(tmp_path_factory.mktemp(f"cluster-{version}"), version=version)
        return started[version]

    try:
        yield of
    finally:
        for version, local in started.items():
            if version != binaries.KUBERNETES_VERSION:
                local.stop()
