"""Wippy's entry files load unchanged (its docs' own examples), and what Moontide cannot honour is refused.

The YAML here is copied from Wippy's documentation (wippyai/docs: en/temporal/overview.md,
en/temporal/workflows.md, en/temporal/activities.md, en/lua/entries.md, en/concepts/workflows.md,
en/guides/entry-kinds.md); what these tests expect of it is what those pages say.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from moontide_testing import eventually
from moontide.entries import App, load_app
from moontide.processes import ServiceState
from moontide.runtime import AppRuntime
from test_loader import one, problems_of

# en/temporal/overview.md, "Complete Example" (the Lua files are ours: the page gives none)
COMPLETE_EXAMPLE = """\
version: "1.0"
namespace: app

entries:
  - name: temporal_client
    kind: temporal.client
    address: "localhost:7233"
    namespace: "default"
    lifecycle:
      auto_start: true

  - name: worker
    kind: temporal.worker
    client: app:temporal_client
    task_queue: "orders"
    lifecycle:
      auto_start: true
      depends_on:
        - app:temporal_client

  - name: order_workflow
    kind: workflow.lua
    source: file://order_workflow.lua
    method: main
    modules:
      - funcs
      - time
    meta:
      temporal:
        workflow:
          worker: app:worker

  - name: charge_payment
    kind: function.lua
    source: file://payment.lua
    method: charge
    modules:
      - http_client
      - json
    meta:
      temporal:
        activity:
          worker: app:worker
"""

# en/temporal/overview.md, "Worker Options" (every option the page lists, at the page's values)
WORKER_OPTIONS = """\
version: "1.0"
namespace: app
entries:
  - name: temporal_client
    kind: temporal.client
    address: "localhost:7233"
  - name: worker
    kind: temporal.worker
    client: app:temporal_client
    task_queue: "my-app-queue"
    worker_options:
      # Identity
      identity: ""                          # Worker identity (appears in Temporal UI)

      # Concurrency
      max_concurrent_activity_execution_size: 1000
      max_concurrent_workflow_task_execution_size: 1000
      max_concurrent_local_activity_execution_size: 1000
      max_concurrent_session_execution_size: 1000
      max_concurrent_eager_activity_execution_size: 0

      # Pollers
      max_concurrent_activity_task_pollers: 20
      max_concurrent_workflow_task_pollers: 20

      # Rate limiting
      worker_activities_per_second: 0        # 0 = unlimited
      worker_local_activities_per_second: 0
      task_queue_activities_per_second: 0

      # Timeouts
      sticky_schedule_to_start_timeout: "5s"
      worker_stop_timeout: "0s"
      deadlock_detection_timeout: "0s"
      max_heartbeat_throttle_interval: "0s"
      default_heartbeat_throttle_interval: "0s"

      # Feature flags
      enable_logging_in_replay: false
      enable_session_worker: false
      disable_workflow_worker: false
      local_activity_worker_only: false
      disable_eager_activities: false
      disable_registration_aliasing: false

      # Versioning
      deployment_name: ""
      build_id: ${env:BUILD_ID}              # Read from env registry
      use_versioning: false
      default_versioning_behavior: "pinned" # or "auto_upgrade"
"""

# en/temporal/overview.md, "Authentication" and "TLS Configuration" (one client per form the page shows)
CLIENTS = """\
version: "1.0"
namespace: app
entries:
  - name: none
    kind: temporal.client
    address: "localhost:7233"
    auth:
      type: none
  - name: direct
    kind: temporal.client
    address: "your-namespace.tmprl.cloud:7233"
    namespace: "your-namespace"
    auth:
      type: api_key
      api_key: "your-api-key"
  - name: from_env
    kind: temporal.client
    address: "your-namespace.tmprl.cloud:7233"
    namespace: "your-namespace"
    auth:
      type: api_key
      api_key: ${env:TEMPORAL_API_KEY}
  - name: from_file
    kind: temporal.client
    address: "your-namespace.tmprl.cloud:7233"
    namespace: "your-namespace"
    auth:
      type: api_key
      api_key_file: "/etc/secrets/temporal-api-key"
  - name: mtls
    kind: temporal.client
    address: "temporal.example.com:7233"
    namespace: "production"
    auth:
      type: mtls
      cert_file: "/path/to/client.pem"
      key_file: "/path/to/client.key"
    tls:
      enabled: true
      ca_file: "/path/to/ca.pem"
  - name: pem
    kind: temporal.client
    address: "temporal.example.com:7233"
    auth:
      type: mtls
      cert_pem: |
        -----BEGIN CERTIFICATE-----
        ...
        -----END CERTIFICATE-----
      key_pem: ${env:TEMPORAL_CLIENT_KEY}
    tls:
      enabled: true
      ca_file: "/path/to/ca.pem"
      server_name: "temporal.example.com"    # Override server name verification
      insecure_skip_verify: false            # Skip verification (dev only)
    health_check:
      enabled: true
      interval: "30s"
    tq_prefix: "team-a-"
    connection_timeout: "10s"
    keep_alive_time: "30s"
    keep_alive_timeout: "10s"
"""

# en/concepts/workflows.md, "Failure and Supervision" and "Configuration"; the host from en/guides/entry-kinds.md
PROCESS_SERVICE = """\
version: "1.0"
namespace: app
entries:
  # Process definition
  - name: session_handler
    kind: process.lua
    source: file://session_handler.lua
    method: main

  # Supervised service wrapping the process
  - name: session_manager
    kind: process.service
    process: app:session_handler
    host: app:processes
    lifecycle:
      auto_start: true
      restart:
        max_attempts: 10

  - name: processes
    kind: process.host
    lifecycle:
      auto_start: true

  - name: order_processor
    kind: workflow.lua
    source: file://order_processor.lua
    method: main
    modules:
      - funcs
      - time

  - name: temporal_worker
    kind: temporal.worker
    client: app:temporal_client
    task_queue: "orders"
    lifecycle:
      auto_start: true

  - name: temporal_client
    kind: temporal.client
    address: "localhost:7233"
"""

MAIN = "local function main(...) return ... end\nreturn { main = main }\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def line_of(text: str, needle: str) -> int:
    """1-based line where ``needle`` (maybe several lines) starts."""
    return text[:text.index(needle)].count("\n") + 1 + (len(needle) - len(needle.lstrip("\n")))


# -- Wippy's examples load unchanged ------------------------------------------------

def test_the_complete_temporal_example_loads_with_its_routing(tmp_path: Path) -> None:
    app = load_app(write(tmp_path, {"app.yaml": COMPLETE_EXAMPLE, "order_workflow.lua": MAIN,
                                    "payment.lua": "return { charge = function(i) return i end }\n"}))
    workflow, charge = app.get("app:order_workflow"), app.get("app:charge_payment")
    assert app.routed_worker(workflow) == app.routed_worker(charge) == "app:worker"
    assert app.runs_on(workflow, "app:worker") and app.runs_on(charge, "app:worker")
    assert not app.runs_on(workflow, "app:other")
    assert not app.is_local_activity(charge)
    assert app.workflow_type(workflow) == "app:order_workflow"  # "defaults to entry ID"
    assert app.task_queue(app.get("app:worker")) == "orders"
    assert charge.data["modules"] == ["http_client", "json"]


def test_every_worker_option_of_the_page_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = load_app(write(tmp_path, {"app.yaml": WORKER_OPTIONS})).get("app:worker").data["worker_options"]
    assert opts["max_concurrent_activity_execution_size"] == 1000
    assert opts["max_concurrent_workflow_task_pollers"] == 20
    assert opts["sticky_schedule_to_start_timeout"] == "5s"
    assert opts["build_id"] == "${env:BUILD_ID}"  # read when the worker starts (tests/workflows)
    assert opts["default_versioning_behavior"] == "pinned"
    # Moontide's own options keep their defaults beside Wippy's
    assert opts["instruction_budget"] == 20_000_000 and opts["inline_activations"] is True


def test_every_client_form_of_the_page_loads(tmp_path: Path) -> None:
    app = load_app(write(tmp_path, {"app.yaml": CLIENTS}))
    assert app.get("app:from_file").data["auth"] == {"type": "api_key",
                                                      "api_key_file": "/etc/secrets/temporal-api-key"}
    pem = app.get("app:pem").data
    assert pem["auth"]["cert_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert pem["health_check"] == {"enabled": True, "interval": "30s"}
    assert (pem["tq_prefix"], pem["connection_timeout"], pem["keep_alive_time"]) == ("team-a-", "10s", "30s")
    assert app.get("app:none").data["tq_prefix"] == ""


def test_the_process_service_example_loads_with_a_process_lua_without_modules(tmp_path: Path) -> None:
    app = load_app(write(tmp_path, {"app.yaml": PROCESS_SERVICE, "session_handler.lua": MAIN,
                                    "order_processor.lua": MAIN}))
    handler = app.get("app:session_handler")
    assert handler.data["modules"] == [] and handler.data["method"] == "main"
    assert app.get("app:session_manager").data["lifecycle"]["restart"]["max_attempts"] == 10
    assert app.get("app:processes").data["lifecycle"]["auto_start"] is True


async def test_the_process_service_example_runs(tmp_path: Path, temporal_address: str) -> None:
    # on the session's real Temporal server: the service starts with the app and its handler runs
    handler = "local function main(...) return { handled = select('#', ...) } end\nreturn { main = main }\n"
    app = write(tmp_path, {"app.yaml": PROCESS_SERVICE, "session_handler.lua": handler, "order_processor.lua": MAIN})
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        svc = rt.processes.service("app:session_manager")
        await eventually(lambda: svc.state, lambda s: s == ServiceState.EXITED, what="the handler ran to its end")
        assert svc.last_error is None
        assert await rt.result(await rt.spawn("app:order_processor", "app:temporal_worker", 7)) == 7


def test_the_documented_local_activity_and_custom_workflow_name(tmp_path: Path) -> None:
    # en/temporal/activities.md "Local Activities"; en/temporal/workflows.md "Metadata Fields" (name)
    text = COMPLETE_EXAMPLE + """
  - name: validate_input
    kind: function.lua
    source: file://validate.lua
    method: validate
    modules:
      - json
    meta:
      temporal:
        activity:
          worker: app:worker
          local: true

  - name: renamed
    kind: workflow.lua
    source: file://order_workflow.lua
    method: main
    meta:
      temporal:
        workflow:
          worker: worker
          name: OrderFlow
"""
    app = load_app(write(tmp_path, {"app.yaml": text, "order_workflow.lua": MAIN, "payment.lua": MAIN,
                                    "validate.lua": "return { validate = function(i) return i end }\n"}))
    assert app.is_local_activity(app.get("app:validate_input"))
    renamed = app.get("app:renamed")
    assert app.workflow_type(renamed) == "OrderFlow"
    assert app.routed_worker(renamed) == "app:worker"  # a reference without a namespace takes the entry's


def test_a_host_names_a_worker_by_entry_id_or_task_queue(tmp_path: Path) -> None:
    text = COMPLETE_EXAMPLE.replace('address: "localhost:7233"', 'address: "localhost:7233"\n    tq_prefix: "p-"')
    app = load_app(write(tmp_path, {"app.yaml": text, "order_workflow.lua": MAIN, "payment.lua": MAIN}))
    worker = app.get("app:worker")
    assert app.task_queue(worker) == "p-orders"
    assert app.temporal_worker("app:worker", "app") is worker
    assert app.temporal_worker("worker", "app") is worker
    assert app.temporal_worker("p-orders", "other") is worker
    with pytest.raises(Exception, match="not a temporal.worker"):
        app.temporal_worker("app:temporal_client", "app")


# -- what Moontide cannot honour is refused, naming file, entry, field and line ---------

PROCESS_AND_HOST = """\
  - name: proc
    kind: process.lua
    source: "return function() end"
    meta:
      temporal:
        activity:
          worker: worker
  - name: host
    kind: process.host
    lifecycle:
      auto_start: false
"""


REFUSED = """\
version: "1.0"
namespace: app
entries:
  - name: client
    kind: temporal.client
    address: "localhost:7233"
    security_hmac_key: "0123456789abcdef0123456789abcdef"
    tls:
      enabled: true
      cert_file: old.pem
      insecure_skip_verify: true
  - name: worker
    kind: temporal.worker
    client: client
    worker_options:
      max_concurrent_activities: 10
      enable_session_worker: true
      use_versioning: true
      max_concurrent_eager_activity_execution_size: 5
      worker_local_activities_per_second: 3
      deadlock_detection_timeout: 2s
  - name: flow
    kind: workflow.lua
    source: "return function() end"
    modules: [funcs, http]
    meta:
      temporal:
        workflow:
          name: Flow
          task_queue: elsewhere
  - name: fn
    kind: function.lua
    source: "return function() end"
    pool:
      type: inline
    modules: [sql]
    meta:
      owner: team-a
      temporal:
        activity:
          worker: client
          local: "yes"
  - name: api
    kind: http.service
    addr: ":8080"
""" + PROCESS_AND_HOST.replace("    lifecycle:", "    host:\n      workers: 32\n    lifecycle:")


def test_what_moontide_cannot_honour_is_refused_with_the_reason(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path, {"app.yaml": REFUSED}))
    expected = {
        ("app:client", "security_hmac_key", "security_hmac_key:"):
            "Wippy's HMAC-signed security context is not supported by Moontide",
        ("app:client", "tls.cert_file", "cert_file: old.pem"):
            "moved to auth.cert_file (Wippy's place for the client certificate)",
        ("app:worker", "worker_options.max_concurrent_activities", "max_concurrent_activities:"):
            "renamed to worker_options.max_concurrent_activity_execution_size (Wippy's name)",
        ("app:flow", "modules[1]", "modules: [funcs, http]"): "module 'http' is not allowed in a workflow.lua",
        ("app:flow", "meta.temporal.workflow.worker", "workflow:"): "missing required field 'worker'",
        ("app:flow", "meta.temporal.workflow.task_queue", "task_queue: elsewhere"): "unknown field 'task_queue'",
        ("app:fn", "pool", "pool:"): "per-function pools are not supported",
        ("app:fn", "modules[0]", "modules: [sql]"): "Moontide has no Lua module 'sql'",
        ("app:fn", "meta.temporal.activity.local", 'local: "yes"'): "expected true or false, got 'yes'",
        ("app:fn", "meta.temporal.activity.worker", "worker: client"):
            "'app:client' is a temporal.client, expected a temporal.worker",
        ("app:proc", "meta.temporal", "      temporal:\n        activity:\n          worker: worker"):
            "Moontide runs a process.lua on a process.host, not as a Temporal activity",
        ("app:host", "host", "    host:"): "Wippy's scheduler settings (host.workers",
        ("app:api", "kind", "kind: http.service"): "Wippy's kind 'http.service' is not supported by Moontide",
    }
    text = REFUSED
    for (entry, field, needle), message in expected.items():
        problem = one(found, entry=entry, field=field)
        assert problem.message.startswith(message), problem
        assert (problem.file, problem.line) == ("app.yaml", line_of(text, needle)), problem
    # values that cannot be honoured (the worker's, the host's) are reported once the schema is satisfied
    assert len(found) == len(expected)


def test_values_moontide_cannot_honour_are_refused(tmp_path: Path) -> None:
    text = REFUSED.split("  - name: flow")[0].replace("      max_concurrent_activities: 10\n", "") \
        .replace('    security_hmac_key: "0123456789abcdef0123456789abcdef"\n', "") \
        .replace("      cert_file: old.pem\n", "") + PROCESS_AND_HOST
    found = problems_of(write(tmp_path, {"app.yaml": text}))
    for field, message in {
        "tls.insecure_skip_verify": "Must be false: the Temporal SDK always verifies",
        "worker_options.enable_session_worker": "Must be false: the Temporal Python SDK has no sessions",
        "worker_options.use_versioning": "Must be false for now: Temporal worker versioning is not supported",
        "worker_options.max_concurrent_eager_activity_execution_size": "Must be 0 (no separate cap)",
        "worker_options.worker_local_activities_per_second": "Must be 0 (unlimited)",
        "worker_options.deadlock_detection_timeout": "Must be 0: Moontide bounds each workflow activation",
        "lifecycle.auto_start": "Must be true (Wippy's usual setting): a process.host always starts",
        "meta.temporal": "Moontide runs a process.lua on a process.host, not as a Temporal activity",
    }.items():
        problem = one(found, field=field)
        assert problem.message.startswith(message), problem
        assert problem.line, problem
    assert len(found) == 8




def test_routing_references_must_name_a_temporal_worker(tmp_path: Path) -> None:
    text = COMPLETE_EXAMPLE.replace("          worker: app:worker\n\n  - name: charge_payment",
                                    "          worker: app:wroker\n\n  - name: charge_payment") \
        .replace("        activity:\n          worker: app:worker", "        activity:\n          worker: temporal_client")
    found = problems_of(write(tmp_path, {"app.yaml": text, "order_workflow.lua": MAIN, "payment.lua": MAIN}))
    assert one(found, field="meta.temporal.workflow.worker").message == (
        "unknown entry 'app:wroker' (did you mean 'app:worker'? expected a temporal.worker)")
    assert one(found, field="meta.temporal.activity.worker").message == (
        "'app:temporal_client' is a temporal.client, expected a temporal.worker")
    assert len(found) == 2


def test_two_workflows_cannot_share_a_temporal_type(tmp_path: Path) -> None:
    body = "".join(f"""
  - name: {name}
    kind: workflow.lua
    source: "return function() end"
    meta: {{temporal: {{workflow: {{worker: worker, name: {type_name}}}}}}}""" for name, type_name in
                   (("a", "Orders"), ("b", "Orders"), ("c", "app:order_workflow")))
    text = COMPLETE_EXAMPLE + body + "\n"
    found = problems_of(write(tmp_path, {"app.yaml": text, "order_workflow.lua": MAIN, "payment.lua": MAIN}))
    assert one(found, entry="app:b").message == "workflow type 'Orders' is already the name of workflow app:a"
    assert one(found, entry="app:c").message == (
        "workflow type 'app:order_workflow' is already the ID of workflow app:order_workflow")
    assert len(found) == 2


def test_an_app_without_routing_is_served_by_every_worker(tmp_path: Path) -> None:
    # Moontide's default (no meta.temporal): every worker runs every workflow and function
    text = COMPLETE_EXAMPLE.replace("""    meta:
      temporal:
        workflow:
          worker: app:worker
""", "").replace("""    meta:
      temporal:
        activity:
          worker: app:worker
""", "")
    app: App = load_app(write(tmp_path, {"app.yaml": text, "order_workflow.lua": MAIN, "payment.lua": MAIN}))
    for entry_id in ("app:order_workflow", "app:charge_payment"):
        assert app.routed_worker(app.get(entry_id)) is None
        assert app.runs_on(app.get(entry_id), "app:worker") and app.runs_on(app.get(entry_id), "app:any")
