"""``moontide manifests``: an app as CRs, and back to the same entries."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from moontide import errors
from moontide.k8s import bundle
from moontide.tools import crds, manifests
from moontide.k8s.kinds import BY_KIND
from moontide.entries import load_app
from moontide.lua import check_syntax

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("example", ["orders", "approval"])
def test_round_trip_gives_the_same_entries(example: str) -> None:
    original = load_app(EXAMPLES / example, check_lua=check_syntax)
    text = manifests.dump(manifests.manifests_of_dir(EXAMPLES / example))
    docs = list(yaml.safe_load_all(text))
    back = bundle.load(docs, check_lua=check_syntax)
    assert list(back.entries) == sorted(back.entries, key=list(back.entries).index)
    assert set(back.entries) == set(original.entries)
    for entry_id, entry in original.entries.items():
        again = back.entries[entry_id]
        assert (again.kind, again.namespace, again.name, again.data) == (entry.kind, entry.namespace, entry.name,
                                                                         entry.data)


@pytest.mark.parametrize("example", ["orders", "approval"])
def test_every_cr_is_valid_under_its_crd_schema(example: str) -> None:
    for doc in manifests.manifests_of_dir(EXAMPLES / example):
        schema = crds.crd(BY_KIND[doc["kind"]])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        jsonschema.validate(doc, schema)
        assert DNS_LABEL.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63


def test_names_are_dns_labels_unique_per_id() -> None:
    ids = ["app:x", "app:X", "app:x_", "app.x:y", "app:x.y", "_a:_b", "a" * 80 + ":" + "b" * 80]
    names = [manifests.cr_name(i) for i in ids]
    assert len(set(names)) == len(names)
    for n in names:
        assert DNS_LABEL.match(n) and len(n) <= 63, n
    assert manifests.cr_name("app.api:charge_card") == manifests.cr_name("app.api:charge_card")


def test_defaults_are_left_out_and_the_id_is_kept() -> None:
    docs = manifests.manifests_of_dir(EXAMPLES / "orders")
    worker = next(d for d in docs if d["kind"] == "TemporalWorker")
    assert worker["spec"] == {"entryId": "app:temporal_worker", "client": "temporal_client", "task_queue": "orders"}
    fn = next(d for d in docs if d["spec"]["entryId"] == "app.api:charge_card")
    assert fn["metadata"]["annotations"] == {"moontide.io/source-file": "api/payments.lua"}
    assert fn["spec"]["source"].startswith("-- A simulated payment provider.")
    assert "lifecycle" not in worker["spec"]


def _app(tmp_path: Path, source: str) -> Path:
    (tmp_path / "app.yaml").write_text(
        'version: "1.0"\nnamespace: big\nentries:\n  - name: wf\n    kind: workflow.lua\n'
        "    source: file://wf.lua\n    method: main\n")
    (tmp_path / "wf.lua").write_text(source)
    return tmp_path


def test_a_large_source_goes_to_a_configmap_and_comes_back(tmp_path: Path) -> None:
    source = "local function main() return 1 end\n" + "-- padding\n" * 40_000 + "return { main = main }\n"
    docs = manifests.manifests_of_dir(_app(tmp_path, source))
    cm, cr = docs
    assert cm["kind"] == "ConfigMap" and cm["data"] == {manifests.SOURCE_KEY: source}
    assert cr["spec"]["sourceFrom"] == {"configMapKeyRef": {"name": cm["metadata"]["name"], "key": "source.lua"}}
    assert "source" not in cr["spec"]
    back = bundle.load([cr], sources=lambda name, key: cm["data"][key] if name == cm["metadata"]["name"] else None)
    assert back.get("big:wf").data["source"] == source


def test_a_source_too_large_for_a_configmap_is_refused(tmp_path: Path) -> None:
    source = "return function() end\n" + "-- padding padding padding\n" * 50_000
    with pytest.raises(errors.Invalid, match="larger than a ConfigMap"):
        manifests.manifests_of_dir(_app(tmp_path, source))


def test_an_api_key_becomes_a_secret_reference(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(
        'version: "1.0"\nnamespace: c\nentries:\n  - name: cloud\n    kind: temporal.client\n'
        "    address: x.tmprl.cloud:7233\n    auth: {type: api_key, api_key: '${env:KEY}'}\n")
    (cr,) = manifests.manifests_of_dir(tmp_path)
    assert cr["spec"]["auth"] == {"type": "api_key"}
    assert cr["spec"]["apiKeySecretRef"] == {"name": f"{cr['metadata']['name']}-api-key", "key": "api-key"}


def test_namespace_option_sets_metadata_namespace() -> None:
    docs = manifests.manifests_of_dir(EXAMPLES / "orders", namespace="shop")
    assert {d["metadata"]["namespace"] for d in docs} == {"shop"}


def test_lua_stays_readable_in_yaml() -> None:
    text = manifests.dump(manifests.manifests_of_dir(EXAMPLES / "orders"))
    assert "  source: |\n    -- A simulated payment provider." in text
