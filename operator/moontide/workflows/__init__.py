"""Lua on Temporal: the dynamic workflow, the function activities and the worker that serves them."""

from ..protocol import CANCEL_FROM_SIGNAL, MEMO_CODE, MEMO_CONTEXT, STATUS_QUERY
from ._codebook import CodeBook
from ._context import ContextInterceptor
from ._functions import Functions, activity_for
from ._options import ActivityDefaults, spawn_options
from ._worker import build_worker
from ._replay import ReplayReport, fetch_histories, history_from_file, replay
from ._rollout import RolloutCheck, changed_workflows, check_rollout, codes_in_use
from ._upgrade import UpgradeReport, upgrade, versioning_behavior
from ._mailbox import message_payload
from ._workflow import WorkflowSettings, failure_of, workflow_class

__all__ = ["CANCEL_FROM_SIGNAL", "MEMO_CODE", "MEMO_CONTEXT", "STATUS_QUERY", "ActivityDefaults", "CodeBook",
           "ContextInterceptor", "Functions", "ReplayReport", "RolloutCheck", "UpgradeReport", "WorkflowSettings",
           "activity_for", "build_worker", "changed_workflows", "check_rollout", "codes_in_use", "failure_of", "fetch_histories",
           "history_from_file", "message_payload", "replay", "spawn_options", "upgrade", "versioning_behavior",
           "workflow_class"]
