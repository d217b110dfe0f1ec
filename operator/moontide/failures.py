"""Moontide errors to and from Temporal's failures: the one place they are mapped.

=============================================  =========================================================
Temporal                                       Moontide
=============================================  =========================================================
``ApplicationError(type=K, non_retryable=N)``  the error of kind ``K`` (``errors.of_kind``), retryable = not N
``TimeoutError``                               ``Timeout``
``CancelledError``                             ``Canceled``
``TerminatedError``                            ``Terminated``
anything else                                  ``Internal``
RPC ``NOT_FOUND``                              ``NotFound`` (no such execution)
RPC ``ALREADY_EXISTS``                         ``AlreadyExists``
RPC ``PERMISSION_DENIED``/``UNAUTHENTICATED``  ``PermissionDenied``
other RPC errors                               ``Unavailable``
=============================================  =========================================================

An activity's or child's failure arrives wrapped (``ActivityError``,
``ChildWorkflowError``); a finished workflow's in ``WorkflowFailureError``:
``error_of`` looks through the wrapper, ``workflow_failed`` makes the
``WorkflowFailed`` a caller of ``result`` gets.
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import (ActivityError, ApplicationError, CancelledError, ChildWorkflowError,
                                   TerminatedError, TimeoutError)

from . import errors

__all__ = ["application_error", "error_of", "rpc_error", "workflow_failed"]

_END = {CancelledError: "Canceled", TerminatedError: "Terminated", TimeoutError: "Timeout"}


def application_error(e: errors.MoontideError, *, message: str | None = None,
                      non_retryable: bool | None = None) -> ApplicationError:
    """``e`` as the ApplicationError that carries it through Temporal (its details, if any, as one detail)."""
    details = () if e.details is None else (e.details,)
    return ApplicationError(e.message if message is None else message, *details, type=e.kind,
                            non_retryable=(not e.retryable) if non_retryable is None else non_retryable)


def error_of(e: BaseException) -> errors.MoontideError:
    """What an activity's, child's or workflow's failure means: kind, message, retryable."""
    cause = e.cause if isinstance(e, (ActivityError, ChildWorkflowError)) and e.cause is not None else e
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details else None
        return errors.of_kind(cause.type, cause.message, retryable=not cause.non_retryable, details=details)
    if isinstance(cause, TimeoutError):
        return errors.Timeout(f"timed out ({cause.type.name.lower() if cause.type else 'timeout'})")
    if isinstance(cause, CancelledError):
        return errors.Canceled("canceled")
    if isinstance(cause, TerminatedError):
        return errors.Terminated("terminated")
    return errors.Internal(str(cause))


def workflow_failed(cause: BaseException | None) -> errors.WorkflowFailed:
    """The WorkflowFailed for a finished execution whose failure is ``cause`` (``WorkflowFailureError.cause``)."""
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details else None
        return errors.WorkflowFailed(cause.message, kind=cause.type or "Internal", details=details)
    kind = next((k for t, k in _END.items() if isinstance(cause, t)), "Internal")
    return errors.WorkflowFailed(str(cause) or kind.lower(), kind=kind)


def rpc_error(what: Any, e: Any) -> errors.MoontideError:
    """A failed call to the Temporal server about ``what`` (a pid, a workflow ID) as an error."""
    from temporalio.service import RPCStatusCode

    status = getattr(e, "status", None)
    message = getattr(e, "message", str(e))
    if status == RPCStatusCode.NOT_FOUND:
        return errors.NotFound(f"no running execution {what}: {message}")
    if status == RPCStatusCode.ALREADY_EXISTS:
        return errors.AlreadyExists(f"{what}: {message}")
    if status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED):
        return errors.PermissionDenied(f"{what}: {message}")
    return errors.Unavailable(f"{what}: {message}")
