"""Flywheel's domain, deployed with every Lambda function, in rooms by capability.

Layers, from the ground up; a module imports only from its own layer or the ones below it, never from a
higher one, and no two modules import each other in a circle (``tests/unit/test_layering.py`` holds both):

1. the ground floor, these modules: ``errors``, ``env_names``, ``layout``, ``naming``, ``hashing``,
   ``observability``, ``settings``, ``aws`` (the one place boto3 clients are made), ``dynamo``,
   ``storage``, ``workflow``, ``invoke`` (another function, invoked), ``documents``, ``charts`` (HTML
   pages with inline SVG charts) — ports and adapters that know nothing of models or data;
2. the stores: ``metadata`` (runs, datasets, lineage), ``registry`` (model versions and aliases) and
   ``experiments`` (hyperparameter searches and their trials);
3. ``services``: the adapters a function works with, each made on first use;
4. :mod:`shared.data`: contracts, where they are kept, validation, quarantine, validated datasets;
5. :mod:`shared.ml`: training, the training window, evaluation, the row-preparation rule;
6. :mod:`shared.featurestore`: feature views, offline and online stores, a contract's views;
7. :mod:`shared.serving`: the prediction API and its runtime, ONNX packaging, captures;
8. :mod:`shared.scoring`: batch scoring jobs, through the serving runtime, with their manifest and lineage;
9. :mod:`shared.pipeline`: the run's state, the trigger, the steps, delivery, verification;
10. :mod:`shared.monitoring`: the monitor, drift, its decision and report, labels, feedback.

Only the adapters talk to AWS. Nothing here reads ``os.environ`` directly: configuration arrives through
:mod:`shared.settings`.
"""
