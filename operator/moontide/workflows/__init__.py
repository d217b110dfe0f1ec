"""Lua on Temporal: the dynamic workflow, the function activities and the worker that serves them."""

from ._codebook import MEMO_CODE, CodeBook
from ._context import MEMO_CONTEXT, ContextInterceptor
from ._functions import Functions, activity_for
from ._options import ActivityDefaults, spawn_options, temporal_conflict_policy
from ._worker import build_worker
from ._replay import ReplayReport, fetch_histories, history_from_file, replay
from ._mailbox import CANCEL_FROM_SIGNAL, message_payload
from ._workflow import STATUS_QUERY, WorkflowSettings, failure_of, workflow_class

__all__ = ["CANCEL_FROM_SIGNAL", "MEMO_CODE", "MEMO_CONTEXT", "STATUS_QUERY", "ActivityDefaults", "CodeBook",
           "ContextInterceptor", "Functions", "ReplayReport", "WorkflowSettings", "activity_for", "build_worker", "failure_of", "fetch_histories", "history_from_file",
           "message_payload", "replay", "spawn_options", "temporal_conflict_policy", "workflow_class"]
