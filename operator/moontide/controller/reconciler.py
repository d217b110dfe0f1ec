"""Entry CRs of a namespace -> Ready conditions, Events, bundle ConfigMaps and Deployments.

Level-triggered: a watch event (or the periodic resync) marks a namespace
dirty; one task per namespace then lists every entry CR there, validates them
together as one app (``bundle.build``: references resolve across CRs, Lua
compiles), writes each CR's ``Ready`` condition, and server-side applies what
each TemporalWorker and ProcessService needs. Applying the same objects twice
changes nothing, so a restart or a second look is always safe.

A bad change never rolls the workers into a crash: the bundle takes each
valid CR as it is and, for a CR with problems, the version last deployed (from
the bundle ConfigMap), or leaves it out when there is none. The CR itself
says Ready=False with the field and line.

Nor does a change that running executions would not replay on: before a
TemporalWorker gets a new bundle, the running executions that would run its
new code are replayed on it (``rollout``); on divergence the workers keep the
previous bundle and the TemporalWorker and the diverging LuaWorkflows say
Ready=False, ``ReplayDivergence``, with the Lua line, until the change is
fixed or the TemporalWorker's ``moontide.io/accept-bundle`` names the new bundle.

Worker pods reload a new bundle in place: after the ConfigMap, the operator
annotates each pod with the bundle's hash, and that pod update makes the
kubelet refresh the pod's ConfigMap volumes at once (instead of at its next
periodic sync, up to a minute or more). Only a changed TemporalWorker or
TemporalClient rolls them (``objects.config_hash``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Pod

from .. import errors
from ..entries import App, CheckLua, resolve_ref
from ..k8s import bundle, objects
from . import conditions
from ..k8s.kinds import (
    ANNOTATION_ACCEPT_BUNDLE,
    ANNOTATION_BUNDLE_HASH,
    API_VERSION,
    ENTRY_RESOURCES,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
)
from ..k8s.config import OperatorConfig
from ..k8s.health import metric
from ..k8s.kube import CUSTOM_RESOURCES, Kube, KubeError, custom_resource
from .rollout import Rollouts

__all__ = ["Reconciler"]

log = logging.getLogger("moontide.operator")

_RECONCILES = metric("Counter", "moontide_operator_reconciles_total", "Namespace reconciles, by outcome.",
                     ("outcome",))
_RECONCILE_SECONDS = metric("Histogram", "moontide_operator_reconcile_seconds", "Time to reconcile a namespace.")
_ENTRIES = metric("Gauge", "moontide_operator_entries", "Entry CRs by Ready status.", ("namespace", "ready"))
_CODE_ORDER = "moontide.io/code-order"
_OWNERS = ("TemporalWorker", "ProcessService")
#: While changes have not settled, the valid CRs are marked Ready this often (seconds).
_VALIDATE_SECONDS = 1.0

Key = tuple[str, str]  # (kind, name)


def _key(cr: Mapping[str, Any]) -> Key:
    return str(cr["kind"]), str((cr.get("metadata") or {}).get("name") or cr.get("name"))


def _memo(check: CheckLua | None) -> CheckLua | None:
    """``check`` remembered by (text, chunkname): a namespace's Lua compiles once per change."""
    if check is None:
        return None
    seen: dict[tuple[str, str], Any] = {}

    def cached(text: str, chunkname: str) -> Any:
        key = (text, chunkname)
        if key not in seen:
            if len(seen) > 4096:
                seen.clear()
            seen[key] = check(text, chunkname)
        return seen[key]

    return cached


@dataclass
class _Deployed:
    """What the last full reconcile deployed for a TemporalWorker or ProcessService (a Deployment event or a
    re-check then updates its Ready condition from the pods without building the bundle again)."""

    kind: str
    uid: str
    generation: int | None
    digest: str
    fields: dict[str, Any]
    #: What the Ready message says of the bundle ("bundle X: N entries; kept ...").
    message: str
    #: The CR's own problems, when its pods run the last good version instead.
    invalid: str = ""


@dataclass
class _Snapshot:
    """A validation pass's view of the namespace: the full reconcile right after it uses it again when no CR
    changed since it was listed (``taken``, the loop's time)."""

    taken: float
    crs: list[dict[str, Any]]
    sources: dict[tuple[str, str], str]
    built: bundle.Built


@dataclass
class _Namespace:
    """A namespace's loop: what woke it, and what it knows of the workers and services it deployed."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: A full reconcile is wanted (an entry CR changed, a Deployment was deleted or edited, the resync).
    full: bool = False
    #: Monotonic times of the first and the last change not yet reconciled (settling a burst).
    first: float | None = None
    last: float = 0.0
    #: Owners whose Deployment reported a change (status): their Ready is re-read from the Deployment.
    changed: set[str] = field(default_factory=set)
    #: Owners not available yet: name -> (when to look again, the interval after that).
    recheck: dict[str, tuple[float, float]] = field(default_factory=dict)
    deployed: dict[str, _Deployed] = field(default_factory=dict)
    #: Deployment name -> the generation the operator's last apply gave it (other generations: edited by someone).
    generations: dict[str, int | None] = field(default_factory=dict)
    applying: set[str] = field(default_factory=set)
    #: CRs whose change the replay check holds back, with why (from the last full reconcile).
    held: dict[Key, str] = field(default_factory=dict)
    snapshot: _Snapshot | None = None
    task: asyncio.Task[None] | None = None


class Reconciler:
    """One reconcile loop per namespace, woken by ``observe``/``poke``/``deployment_event`` and every
    ``resync_seconds``."""

    def __init__(self, kube: Kube, cfg: OperatorConfig, *, check_lua: CheckLua | None = None,
                 code_of: Callable[[App, str], tuple[str, str]] | None = None,
                 rollouts: Rollouts | None = None) -> None:
        self.kube = kube
        self.cfg = cfg
        self.check_lua = _memo(check_lua)
        #: ``code_of(app, entry_id)`` -> (digest, JSON) of a workflow's Lua code (lupa: given by the operator).
        self.code_of = code_of
        #: Asks Temporal before a rollout and before old code is dropped (None: neither is asked).
        self.rollouts = rollouts
        self._ns: dict[str, _Namespace] = {}
        self._seen: dict[str, tuple[Any, ...]] = {}
        #: (namespace, worker) -> monotonic time of the last look for unused code versions.
        self._collected: dict[tuple[str, str], float] = {}
        #: monotonic time each namespace was last reconciled without error (tests and benchmarks wait on it).
        self.done: dict[str, float] = {}

    # -- triggers -------------------------------------------------------------
    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of an entry CR: reconcile its namespace when the spec changed (or it was deleted)."""
        meta = body.get("metadata") or {}
        uid, ns = meta.get("uid"), meta.get("namespace")
        if not ns or not uid:
            return
        # the spec, or the bundle a user accepts despite a replay divergence
        seen = (meta.get("generation"), (meta.get("annotations") or {}).get(ANNOTATION_ACCEPT_BUNDLE))
        if event_type == "DELETED":
            self._seen.pop(uid, None)
        elif self._seen.get(uid) == seen:
            return  # a status or metadata change (often our own)
        else:
            self._seen[uid] = seen
        self.poke(ns)

    def poke(self, namespace: str) -> None:
        """Reconcile ``namespace`` once its changes settle: ``settle_seconds`` without a new one, at most
        ``settle_max_seconds`` after the first (a burst of changes makes one bundle, one roll)."""
        st = self._state(namespace)
        now = asyncio.get_running_loop().time()
        if st.first is None:
            st.first = now
        st.last = now
        st.full = True
        st.wake.set()

    def deployment_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a Deployment the operator made: its owner's Ready is re-read from it; a deleted or
        edited one (a generation past the one the operator's last apply gave it) is applied again by a full
        reconcile."""
        meta = body.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        if not ns or not name:
            return
        st = self._state(ns)
        generation, applied = meta.get("generation"), st.generations.get(name)
        ours = name in st.applying or (generation is not None and applied is not None and generation <= applied)
        if event_type != "DELETED" and ours:
            st.changed.add(name)
            st.wake.set()
        else:
            self.poke(ns)

    def _state(self, namespace: str) -> _Namespace:
        st = self._ns.get(namespace)
        if st is None:
            st = self._ns[namespace] = _Namespace()
        if st.task is None or st.task.done():
            st.task = asyncio.create_task(self._loop(namespace, st), name=f"reconcile {namespace}")
        return st

    async def stop(self) -> None:
        tasks = [st.task for st in self._ns.values() if st.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ns.clear()

    async def _settle(self, namespace: str, st: _Namespace) -> None:
        """Wait until the namespace's changes settle. Meanwhile, once a second, mark the CRs that are valid so
        far Ready (a validation pass: no Invalid, no deploy), so a long burst leaves little to write at its end."""
        loop = asyncio.get_running_loop()
        validated = st.first
        while st.first is not None:
            now = loop.time()
            due = min(st.last + self.cfg.settle_seconds, st.first + self.cfg.settle_max_seconds)
            if due <= now:
                return
            if validated is not None and st.last > validated and now - validated >= _VALIDATE_SECONDS:
                validated = now
                try:
                    await self.reconcile(namespace, deploy=False)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the full reconcile after the burst reports and retries
                    log.debug("validation pass in %s: %s", namespace, e)
                continue
            await asyncio.sleep(min(due - now, _VALIDATE_SECONDS))

    async def _loop(self, namespace: str, st: _Namespace) -> None:
        loop = asyncio.get_running_loop()
        backoff = 1.0
        resync_at = loop.time() + self.cfg.resync_seconds
        while True:
            if not st.full and not st.changed:
                due = min([resync_at, *(t for t, _ in st.recheck.values())])
                try:
                    await asyncio.wait_for(st.wake.wait(), timeout=max(0.0, due - loop.time()))
                except asyncio.TimeoutError:
                    pass
            st.wake.clear()
            if loop.time() >= resync_at:
                st.full = True
            if not st.full:
                now = loop.time()
                names = st.changed | {n for n, (t, _) in st.recheck.items() if t <= now}
                st.changed.clear()
                await self._refresh(namespace, st, names)
                continue
            await self._settle(namespace, st)
            st.full, st.first = False, None
            st.changed.clear()
            started = time.monotonic()
            try:
                await self.reconcile(namespace)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                _RECONCILES.labels("error").inc()
                log.error("reconciling namespace %s failed (retry in %.0fs): %s", namespace, backoff, e,
                          exc_info=not isinstance(e, KubeError))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                st.full = True
                continue
            backoff = 1.0
            resync_at = loop.time() + self.cfg.resync_seconds
            _RECONCILES.labels("ok").inc()
            _RECONCILE_SECONDS.observe(time.monotonic() - started)
            self.done[namespace] = time.monotonic()

    # -- one reconcile ----------------------------------------------------------
    async def _list(self, namespace: str) -> list[dict[str, Any]]:
        # from the watch cache: a change not in it yet has an event on its way, which reconciles again
        lists = await asyncio.gather(*(self.kube.list(custom_resource(r), namespace, cached=True)
                                       for r in ENTRY_RESOURCES))
        crs = []
        for resource, items in zip(ENTRY_RESOURCES, lists):
            for item in items:
                item["apiVersion"], item["kind"] = API_VERSION, resource.kind
                crs.append(item)
        return crs

    async def _sources(self, namespace: str, refs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        names = sorted({cm for cm, _ in refs})
        found = await asyncio.gather(*(self.kube.get_or_none(ConfigMap, n, namespace=namespace) for n in names))
        data = {n: (cm or {}).get("data") or {} for n, cm in zip(names, found)}
        return {(cm, key): data[cm][key] for cm, key in refs if key in data[cm]}

    async def _build(self, crs: Sequence[Mapping[str, Any]], sources: Mapping[tuple[str, str], str]) -> bundle.Built:
        return await asyncio.to_thread(bundle.build, crs, sources=lambda n, k: sources.get((n, k)),
                                       check_lua=self.check_lua)

    async def reconcile(self, namespace: str, *, deploy: bool = True) -> None:
        """Validate every entry CR of ``namespace`` and deploy its workers and services.

        ``deploy=False`` (a validation pass while changes have not settled yet) only marks the valid CRs
        Ready: a CR that is invalid for now (it refers to one not applied yet) is not reported, and nothing is
        deployed."""
        st = self._ns.setdefault(namespace, _Namespace())
        snapshot, st.snapshot = st.snapshot, None
        t0 = time.monotonic()
        if deploy and snapshot is not None and snapshot.taken > st.last:
            crs, sources, built = snapshot.crs, snapshot.sources, snapshot.built  # nothing changed since
            t1 = t2 = t0
        else:
            taken = asyncio.get_running_loop().time()
            crs = await self._list(namespace)
            sources = await self._sources(namespace, bundle.source_refs(crs))
            t1 = time.monotonic()
            built = await self._build(crs, sources)
            t2 = time.monotonic()
            if not deploy:
                st.snapshot = _Snapshot(taken, crs, sources, built)
        # deployed first: a change the replay check holds back says so on its CRs (``held``)
        owners = [cr for cr in crs if cr["kind"] in _OWNERS]
        if deploy:
            held: dict[Key, str] = {}
            for gone in set(st.deployed) - {cr["metadata"]["name"] for cr in owners}:
                st.deployed.pop(gone, None)
                st.recheck.pop(gone, None)
            await self._service_account(namespace, owners)
            await self._gather([self._deploy(namespace, st, cr, crs, built, sources, held) for cr in owners])
            st.held = held
        held = st.held
        writes: list[Coroutine[Any, Any, Any]] = []
        ready = 0
        for cr in crs:
            problems = built.of(*_key(cr))
            ready += not problems
            if cr["kind"] not in _OWNERS and (deploy or not problems):
                if problems:
                    cond = ("Ready", False, "Invalid", conditions.describe_problems(problems))
                elif _key(cr) in held:
                    cond = ("Ready", False, "ReplayDivergence", held[_key(cr)])
                else:
                    cond = ("Ready", True, "Valid", "valid")
                writes.append(self._status(cr, {}, cond))
        if not deploy:
            patched = sum(r is True for r in await self._gather(writes))
            log.debug("validated %s: %d CRs (read %.3fs, built %.3fs), %d marked Ready in %.3fs", namespace,
                      len(crs), t1 - t0, t2 - t1, patched, time.monotonic() - t2)
            return
        _ENTRIES.labels(namespace, "true").set(ready)
        _ENTRIES.labels(namespace, "false").set(len(crs) - ready)
        patched = sum(r is True for r in await self._gather(writes))
        log.debug("reconciled %s: %d CRs (read %.3fs, built %.3fs), %d statuses written and %d deployed in %.3fs",
                  namespace, len(crs), t1 - t0, t2 - t1, patched, len(owners), time.monotonic() - t2)

    @staticmethod
    async def _gather(writes: list[Any]) -> list[Any]:
        results = await asyncio.gather(*writes, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        return results

    async def _status(self, cr: Mapping[str, Any], fields: Mapping[str, Any],
                      cond: tuple[str, bool, str, str]) -> bool:
        """Patch ``status`` when it differs (True); an Event when Ready changes."""
        meta, status = cr["metadata"], cr.get("status") or {}
        generation = meta.get("generation")
        type_, ok, reason, message = cond
        new = conditions.condition(type_, ok, reason, message, generation, status.get("conditions"))
        wanted = {**fields, "observedGeneration": generation,
                  "conditions": conditions.set_condition(status.get("conditions"), new)}
        if all(status.get(k) == v for k, v in wanted.items()):
            return False
        old = next((c for c in status.get("conditions") or () if c.get("type") == type_), None)
        try:
            await self.kube.merge_patch(CUSTOM_RESOURCES[cr["kind"]].Status, meta["name"], {"status": wanted},
                                        namespace=meta["namespace"])
        except KubeError as e:
            if e.status == 404:
                return False  # deleted meanwhile
            raise
        if isinstance(cr, dict):
            cr["status"] = {**status, **wanted}  # as written (a snapshot of this CR may be used again)
        first_valid = old is None and ok and reason == "Valid"  # no Event per CR for a plain apply
        if not first_valid and (old is None or old.get("status") != new["status"] or old.get("reason") != new["reason"]):
            await self._event(cr, reason=reason, message=message, warning=not ok and reason not in conditions.TRANSIENT)
        return True

    async def _event(self, obj: Mapping[str, Any], *, reason: str, message: str, warning: bool = False) -> None:
        try:
            await self.kube.create(conditions.event(obj, reason=reason, message=message, warning=warning))
        except KubeError as e:  # an Event is best effort
            log.debug("event on %s/%s not posted: %s", obj["kind"], obj["metadata"]["name"], e)

    # -- workers and services -----------------------------------------------------
    async def _previous(self, namespace: str, owner: str) -> tuple[dict[Key, dict[str, Any]], str | None]:
        """The bundle last deployed for ``owner``: its resources by key, and its hash."""
        cm = await self.kube.get_or_none(ConfigMap, objects.bundle_configmap_name(owner), namespace=namespace)
        if not cm:
            return {}, None
        try:
            doc = json.loads((cm.get("data") or {}).get(bundle.BUNDLE_KEY) or "{}")
        except json.JSONDecodeError:
            return {}, None
        resources = {(r["kind"], r["name"]): r for r in doc.get("resources") or [] if "kind" in r and "name" in r}
        return resources, ((cm.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_BUNDLE_HASH)

    async def _deployable(self, crs: list[dict[str, Any]], built: bundle.Built,
                          previous: Mapping[Key, Mapping[str, Any]], sources: Mapping[tuple[str, str], str]
                          ) -> tuple[list[Mapping[str, Any]], App | None, list[str], list[str]]:
        """(CRs to bundle, their app, CRs kept at their last deployed version, CRs left out)."""
        if built.app is not None:
            return list(crs), built.app, [], []
        candidates: dict[Key, Mapping[str, Any]] = {_key(cr): cr for cr in crs}
        fallbacks: list[str] = []
        dropped: list[str] = []
        bad = built.files
        for _ in range(8):
            for key in list(candidates):
                where = bundle.cr_file(*key)
                if where not in bad:
                    continue
                prev = previous.get(key)
                if prev is not None and where not in fallbacks and prev.get("spec") != candidates[key].get("spec"):
                    candidates[key] = {"kind": key[0], "name": key[1], "spec": prev.get("spec")}
                    fallbacks.append(where)
                else:
                    del candidates[key]
                    dropped.append(where)
                    if where in fallbacks:
                        fallbacks.remove(where)
            again = await self._build(list(candidates.values()), sources)
            if again.app is not None:
                return list(candidates.values()), again.app, fallbacks, dropped
            bad = again.files
        return [], None, fallbacks, dropped

    async def _deploy(self, namespace: str, st: _Namespace, owner: dict[str, Any], crs: list[dict[str, Any]],
                      built: bundle.Built, sources: Mapping[tuple[str, str], str], held: dict[Key, str]) -> None:
        kind, name = _key(owner)
        component = "worker" if kind == "TemporalWorker" else "service"
        own = built.of(kind, name)
        # the last deployed bundle matters only when some CR is invalid (it keeps its last good version)
        previous, _ = await self._previous(namespace, name) if built.app is None else ({}, None)
        chosen, app, fallbacks, dropped = await self._deployable(crs, built, previous, sources)
        mine = next((c for c in chosen if _key(c) == (kind, name)), None)
        if app is None or mine is None:
            st.deployed.pop(name, None)  # its Ready is this until a reconcile says otherwise
            st.recheck.pop(name, None)
            message = conditions.describe_problems(own) if own else "nothing valid to deploy: " + ", ".join(dropped)
            await self._status(owner, {}, ("Ready", False, "Invalid", message))
            return
        entry_id = str(mine["spec"]["entryId"])
        entry = app.get(entry_id)
        client_spec = self._client_spec(app, chosen, entry.data, entry.namespace, kind)
        try:
            address = objects.temporal_address(client_spec, self.cfg) if kind == "TemporalWorker" else ""
        except errors.Invalid as e:
            st.deployed.pop(name, None)
            st.recheck.pop(name, None)
            await self._status(owner, {}, ("Ready", False, "NoTemporalAddress", e.message))
            return
        document = bundle.bundle_document(chosen, namespace=namespace)
        text = bundle.dumps(document)
        refs = bundle.source_refs(chosen)
        digest = bundle.digest(text, {r: sources[r] for r in refs if r in sources})
        old_hash = str((owner.get("status") or {}).get("bundleHash") or "")  # "": never deployed
        changed = bool(old_hash) and old_hash != digest
        if kind == "TemporalWorker" and changed \
                and await self._held_back(namespace, st, owner, app, entry_id, client_spec, old_hash, digest, crs,
                                          sources, held):
            return
        configmaps: list[Coroutine[Any, Any, Any]] = [self.kube.apply(objects.bundle_configmap(owner, text, digest, component, self.cfg))]
        if kind == "TemporalWorker":
            configmaps.append(self._code_history(owner, app, entry_id, client_spec))
        await self._gather(configmaps)  # before the Deployment: new pods mount the new bundle
        if kind == "TemporalWorker":
            deployment = objects.worker_deployment(owner, entry_id=entry_id, entry_data=entry.data,
                                                   client_spec=client_spec, refs=refs, digest=digest, cfg=self.cfg)
        else:
            deployment = objects.service_deployment(owner, entry_id=entry_id, entry_data=entry.data,
                                                    client_spec=client_spec, refs=refs, digest=digest, cfg=self.cfg)
        st.applying.add(name)
        try:
            applied = await self.kube.apply(deployment)
        finally:
            st.applying.discard(name)
        st.generations[name] = (applied.get("metadata") or {}).get("generation")
        reloading = await self._hand_over(namespace, name, digest) if kind == "TemporalWorker" and changed else 0
        fields: dict[str, Any] = {"bundleHash": digest, "bundleConfigMap": objects.bundle_configmap_name(name),
                                  "deployment": name}
        if kind == "TemporalWorker":
            fields |= {"taskQueue": str(entry.data.get("task_queue") or entry_id), "temporalAddress": address}
        notes = []
        if fallbacks:
            notes.append("kept the last deployed version of " + ", ".join(fallbacks))
        if dropped:
            notes.append("left out " + ", ".join(dropped))
        note = _Deployed(kind=kind, uid=owner["metadata"]["uid"], generation=owner["metadata"].get("generation"),
                         digest=digest, fields=fields,
                         message=f"bundle {digest}: {len(chosen)} entries" + (f"; {'; '.join(notes)}" if notes else ""),
                         invalid=conditions.describe_problems(own) + " (running the last good version)" if own else "")
        st.deployed[name] = note
        await self._report(namespace, st, owner, note, applied, rolled=changed)
        if changed:
            how = ("1 pod reloads it" if reloading == 1 else f"{reloading} pods reload it") + " in place" \
                if reloading else "pods roll"
            await self._event(owner, reason="BundleUpdated", message=f"bundle {old_hash} -> {digest}: {how}")

    async def _hand_over(self, namespace: str, name: str, digest: str) -> int:
        """Annotate the worker pods not told of bundle ``digest`` yet with it: the pod update makes the kubelet
        refresh their bundle volume now, and ``moontide worker`` reloads it. How many were told."""
        pods = await self.kube.list(Pod, namespace, labels={LABEL_INSTANCE: name, LABEL_COMPONENT: "worker"})
        told = 0
        for pod in pods:
            meta = pod.get("metadata") or {}
            if meta.get("deletionTimestamp") or (meta.get("annotations") or {}).get(ANNOTATION_BUNDLE_HASH) == digest:
                continue
            try:
                await self.kube.merge_patch(Pod, meta["name"], {"metadata": {"annotations": {
                    ANNOTATION_BUNDLE_HASH: digest}}}, namespace=namespace)
                told += 1
            except KubeError as e:
                if e.status != 404:  # gone meanwhile: its replacement mounts the new bundle
                    raise
        return told

    async def _held_back(self, namespace: str, st: _Namespace, owner: Mapping[str, Any], app: App, entry_id: str,
                         client_spec: Mapping[str, Any] | None, old_hash: str, digest: str,
                         crs: list[dict[str, Any]], sources: Mapping[tuple[str, str], str],
                         held: dict[Key, str]) -> bool:
        """Whether bundle ``digest`` must wait: running executions that would run its code do not replay on
        it. Then the owner and the diverging LuaWorkflows say why (``held``), and nothing is applied."""
        name = owner["metadata"]["name"]
        accepted = ((owner["metadata"].get("annotations") or {}).get(ANNOTATION_ACCEPT_BUNDLE) == digest)
        if self.rollouts is None or accepted:
            return False
        previous, _ = await self._previous(namespace, name)
        old = await self._build(list(previous.values()), sources) if previous else None
        try:
            check = await self.rollouts.check(namespace, client_spec, old.app if old else None, app, entry_id)
        except Exception as e:
            st.deployed.pop(name, None)
            await self._status(owner, {}, ("Ready", False, "ReplayCheckFailed",
                                           f"bundle {digest} waits: its replay check did not run ({e}); the "
                                           f"workers keep bundle {old_hash}"))
            raise
        if check.ok:
            return False
        first = check.reports[0]
        message = (f"bundle {digest} held back: {len(check.reports)} of {check.checked} running executions checked "
                   f"do not replay on its code, first: {first}. The workers keep bundle {old_hash}. Fix the "
                   f"change, or roll it out anyway: kubectl annotate temporalworker/{name} "
                   f"{ANNOTATION_ACCEPT_BUNDLE}={digest}")
        log.warning("%s/%s: %s", namespace, name, message)
        by_entry = {str((cr.get("spec") or {}).get("entryId")): _key(cr) for cr in crs if cr["kind"] == "LuaWorkflow"}
        for report in check.reports:
            key = by_entry.get(check.entry_of.get(report.run_id, ""))
            if key is not None and key not in held:
                held[key] = f"held back by TemporalWorker/{name} (bundle {digest}): {report}"
        st.deployed.pop(name, None)
        st.recheck.pop(name, None)
        await self._status(owner, {}, ("Ready", False, "ReplayDivergence", message))
        return True

    async def _report(self, namespace: str, st: _Namespace, owner: Mapping[str, Any], note: _Deployed,
                      deployment: Mapping[str, Any], *, rolled: bool = False) -> None:
        """Write an owner's status from its Deployment (and its pods while none is available): Ready only when
        a pod is available, else the pod-level reason; look again soon while it is not."""
        name = owner["metadata"]["name"]
        dstatus = deployment.get("status") or {}
        quick = conditions.availability(deployment)
        pods: list[dict[str, Any]] = []
        if not quick.ok or note.kind == "ProcessService":
            component = "worker" if note.kind == "TemporalWorker" else "service"
            pods = await self.kube.list(Pod, namespace, labels={LABEL_INSTANCE: name, LABEL_COMPONENT: component})
        avail = conditions.availability(deployment, pods)
        fields = {**note.fields, "replicas": int(dstatus.get("replicas") or 0),
                  "readyReplicas": int(dstatus.get("readyReplicas") or 0),
                  "availableReplicas": avail.available,
                  "updatedReplicas": int(dstatus.get("updatedReplicas") or 0)}
        if note.kind == "ProcessService":
            fields["state"] = "Running" if avail.ok else "Starting" if avail.reason in conditions.TRANSIENT \
                else "Failed"
            fields["restarts"] = avail.restarts
            if avail.last_error:
                fields["lastError"] = avail.last_error[:1000]
        if note.invalid:
            cond = ("Ready", False, "Invalid", f"{note.invalid}; {avail.message}")
        elif avail.ok:
            cond = ("Ready", True, "Deployed", f"{avail.message}; {note.message}")
        else:
            cond = ("Ready", False, avail.reason, f"{avail.message}; {note.message}")
        await self._status(owner, fields, cond)
        loop = asyncio.get_running_loop()
        if avail.ok or avail.desired == 0:
            st.recheck.pop(name, None)
        else:
            interval = self.cfg.recheck_seconds if rolled or name not in st.recheck \
                else min(st.recheck[name][1] * 2, 30.0)
            st.recheck[name] = (loop.time() + interval, interval)

    async def _refresh(self, namespace: str, st: _Namespace, names: set[str]) -> None:
        """Re-read the Ready of these owners from their Deployments (no bundle build)."""

        async def one(name: str) -> None:
            note = st.deployed.get(name)
            if note is None:
                st.recheck.pop(name, None)
                self.poke(namespace)  # not deployed by this process yet: a full reconcile
                return
            owner = await self.kube.get_or_none(CUSTOM_RESOURCES[note.kind], name, namespace=namespace)
            if owner is None or owner["metadata"].get("uid") != note.uid:
                st.deployed.pop(name, None)
                st.recheck.pop(name, None)
                return
            if owner["metadata"].get("generation") != note.generation:
                return  # its spec changed: the full reconcile on its way writes the status
            deployment = await self.kube.get_or_none(Deployment, name, namespace=namespace)
            if deployment is None:
                self.poke(namespace)
                return
            owner["apiVersion"], owner["kind"] = API_VERSION, note.kind
            await self._report(namespace, st, owner, note, deployment)

        later = asyncio.get_running_loop().time() + self.cfg.recheck_seconds
        for name in names & set(st.recheck):  # not again at once, whatever happens below (_report reschedules)
            st.recheck[name] = (later, st.recheck[name][1])
        results = await asyncio.gather(*(one(n) for n in sorted(names)), return_exceptions=True)
        for name, result in zip(sorted(names), results):
            if isinstance(result, Exception):
                log.warning("reading the rollout of %s/%s failed: %s", namespace, name, result)
                st.recheck[name] = (later, self.cfg.recheck_seconds)
            elif isinstance(result, BaseException):
                raise result

    async def _service_account(self, namespace: str, owners: list[dict[str, Any]]) -> None:
        """Apply the worker service account where the operator makes it and some pod here uses it."""
        if not (self.cfg.create_worker_service_account and self.cfg.worker_service_account):
            return
        users = [o for o in owners if not ((o.get("spec") or {}).get("deployment") or {}).get("serviceAccountName")]
        if users:
            await self.kube.apply(objects.worker_service_account(namespace, self.cfg.worker_service_account, users,
                                                                 self.cfg))

    def _client_spec(self, app: App, chosen: list[Mapping[str, Any]], data: Mapping[str, Any], namespace: str,
                     kind: str) -> dict[str, Any] | None:
        clients = {str(c["spec"].get("entryId")): dict(c["spec"]) for c in chosen if c["kind"] == "TemporalClient"}
        if kind == "TemporalWorker":
            return clients.get(resolve_ref(str(data["client"]), namespace))
        return next(iter(clients.values())) if len(clients) == 1 else None

    async def _code_history(self, owner: Mapping[str, Any], app: App, entry_id: str,
                            client_spec: Mapping[str, Any] | None) -> None:
        """Keep every workflow code version that open executions may still run (newest first).

        A version no workflow entry has now goes only once Temporal says no open execution on the worker's
        task queue is pinned to it (asked at most every ``code_gc_seconds``; never when it cannot be asked);
        past ``code_history_bytes`` (a ConfigMap holds 1 MiB) the oldest go, with a warning."""
        if self.code_of is None:
            return
        namespace, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
        current = [self.code_of(app, e.id) for e in app.of_kind("workflow.lua")]
        existing = await self.kube.get_or_none(ConfigMap, objects.code_configmap_name(name), namespace=namespace)
        data = dict((existing or {}).get("data") or {})
        order = [d for d in (((existing or {}).get("metadata") or {}).get("annotations") or {})
                 .get(_CODE_ORDER, "").split(",") if f"{d}.json" in data]
        for digest, text in current:
            data[f"{digest}.json"] = text
            if digest in order:
                order.remove(digest)
            order.insert(0, digest)
        unused = await self._unused_codes(owner, app, entry_id, client_spec, set(order) - {d for d, _ in current})
        if unused:
            log.info("%s/%s: dropping code versions no open execution runs: %s", namespace, name,
                     ", ".join(sorted(unused)))
            order = [d for d in order if d not in unused]
        keep_bytes, kept = 0, list[str]()
        for digest in order:
            keep_bytes += len(data[f"{digest}.json"])
            if keep_bytes > self.cfg.code_history_bytes and kept:
                log.warning("%s/%s: code history over %d bytes: dropping versions %s (executions pinned to them "
                            "can no longer replay)", namespace, name, self.cfg.code_history_bytes,
                            ", ".join(order[len(kept):]))
                break
            kept.append(digest)
        codes = {d: data[f"{d}.json"] for d in kept}
        if existing is not None and (existing.get("data") or {}) == {f"{d}.json": t for d, t in codes.items()} \
                and ((existing.get("metadata") or {}).get("annotations") or {}).get(_CODE_ORDER) == ",".join(kept):
            return
        cm = objects.code_configmap(owner, codes, self.cfg)
        cm["metadata"]["annotations"] = {_CODE_ORDER: ",".join(kept)}
        await self.kube.apply(cm)

    async def _unused_codes(self, owner: Mapping[str, Any], app: App, entry_id: str,
                            client_spec: Mapping[str, Any] | None, old: set[str]) -> set[str]:
        """Of the ``old`` code versions, those no open execution is pinned to (empty when Temporal is not
        asked: no rollouts, asked less than ``code_gc_seconds`` ago, or unreachable)."""
        namespace, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
        now = time.monotonic()
        last = self._collected.get((namespace, name))
        if not old or self.rollouts is None or (last is not None and now - last < self.cfg.code_gc_seconds):
            return set()
        self._collected[(namespace, name)] = now
        try:
            in_use = await self.rollouts.codes_in_use(namespace, client_spec, app, entry_id)
        except Exception as e:  # keep everything: a version dropped too early breaks its executions for good
            log.warning("%s/%s: cannot ask Temporal which code versions are in use (keeping them all): %s",
                        namespace, name, e)
            return set()
        return old - in_use
