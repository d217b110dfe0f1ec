"""Lua on Temporal: the dynamic workflow, the function activities and the worker that serves them."""

from ._codebook import MEMO_CODE, CodeBook
from ._functions import Functions, activity_for
from ._options import ActivityDefaults
from ._worker import build_worker
from ._workflow import WorkflowSettings, failure_of, workflow_class

__all__ = ["MEMO_CODE", "ActivityDefaults", "CodeBook", "Functions", "WorkflowSettings", "activity_for",
           "build_worker", "failure_of", "workflow_class"]
