"""Build-time generators: ``crds`` (CRDs from the entry schemas), ``manifests``
(an app directory -> custom resources), ``chartdocs`` (the Helm chart's README
and values schema from its values.yaml)."""
