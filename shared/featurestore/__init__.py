"""The feature store: shared features defined once, stored for training and for serving.

* :mod:`~shared.featurestore.view`: the feature view (YAML) and its parser, every problem listed at once.
* :mod:`~shared.featurestore.sources`: a feature-source file checked against its view (the data contract's
  reader and rules; a repeated (entity, event time) in one file keeps its last row).
* :mod:`~shared.featurestore.offline`: Parquet under ``features/<view>/date=<YYYY-MM-DD>/<digest>.parquet``
  and the point-in-time join that builds training sets.
* :mod:`~shared.featurestore.online`: the latest row per entity in DynamoDB (conditional writes; batched
  reads), the store the prediction function reads. No pandas at import.
* :mod:`~shared.featurestore.ingest`: one file end to end: validate or quarantine, offline, online.

Wired into Flywheel:

* :mod:`~shared.featurestore.catalog`: views stored as ``feature-views/<view>.yaml`` in the data bucket
  (on the same :class:`~shared.data.catalog.Shelf` as contracts).
* :mod:`~shared.featurestore.arrivals`: the ``features`` function: each file an S3 event announces, ingested.
* :mod:`~shared.featurestore.contracts`: a contract's ``feature_views``: the rules, the effective contract
  (the views' features appended) that training, evaluation, verification and the signature use, the join;
  and putting a contract, checked completely (its views, its estimator's parameters).

Serving fills a request's missing view features from the online store in :mod:`shared.serving.lookup`
(the serving layer's, since it checks a request against the signature).

Which row is "the latest" is decided the same way everywhere: by event time, then by ``__sequence__`` (the
source file's delivery time, then its digest), so a late file never overwrites a newer value, a
re-delivered file changes nothing, and the online value of an entity is what the offline join gives for
"now". Import the submodules; this package imports nothing, so serving pays only for what it uses.

May import :mod:`shared.ml` and below (the row rule, the contract, validation's reader, quarantine).
"""
