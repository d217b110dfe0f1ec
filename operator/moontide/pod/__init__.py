"""What a worker or service pod runs (``moontide worker``, ``moontide service``): ``serve``.

The pod reads the bundle the operator mounted (``moontide.k8s.bundle``) and
the environment it set (``moontide.k8s.objects``), then serves the app's
Temporal workers or one supervised process host, with /healthz, /readyz and
/metrics (``moontide.k8s.health``).
"""
