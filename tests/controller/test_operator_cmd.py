"""The operator command's start: Kopf's scanning follows what RBAC allows."""

from __future__ import annotations

from typing import Any

from moontide.controller import operator_cmd
from moontide.k8s.config import OperatorConfig


class Reviews:
    """Answers SelfSubjectAccessReviews: allowed unless the resource is in ``denied``."""

    def __init__(self, *denied: str) -> None:
        self.denied = set(denied)
        self.asked: list[tuple[str, str]] = []

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        assert (body["apiVersion"], body["kind"]) == ("authorization.k8s.io/v1", "SelfSubjectAccessReview")
        attrs = body["spec"]["resourceAttributes"]
        self.asked.append((attrs["verb"], attrs["resource"]))
        return {**body, "status": {"allowed": attrs["resource"] not in self.denied}}


async def test_kopf_scans_the_cluster_when_allowed() -> None:
    client = Reviews()
    settings = await operator_cmd.kopf_settings(client, OperatorConfig(namespaces=("a",)))
    assert settings.scanning.disabled is False
    assert sorted(client.asked) == [("list", "customresourcedefinitions"), ("list", "namespaces"),
                                    ("watch", "customresourcedefinitions"), ("watch", "namespaces")]
    client = Reviews()
    await operator_cmd.kopf_settings(client, OperatorConfig(clusterwide=True))
    assert {r for _, r in client.asked} == {"customresourcedefinitions"}  # Kopf lists no namespaces then


async def test_without_the_rights_kopf_does_not_scan_instead_of_retrying_for_a_minute() -> None:
    settings = await operator_cmd.kopf_settings(Reviews("namespaces"), OperatorConfig(namespaces=("a",)))
    assert settings.scanning.disabled is True
    assert settings.persistence.finalizer == "moontide.io/finalizer"  # the rest is Moontide's as always
