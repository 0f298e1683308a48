"""Monitoring: whether a model in production still fits its traffic, and closing the loop.

* :mod:`~shared.monitoring.monitor`: one monitor run per model, from the captures to the decision.
* :mod:`~shared.monitoring.window`: the captures and label sets the monitor has not read yet.
* :mod:`~shared.monitoring.log`: the monitor's memory: cursors, cooldown, a record of every run.
* :mod:`~shared.monitoring.drift`: PSI, KS and chi-square against the reference profile (pure).
* :mod:`~shared.monitoring.decision`: live performance and the decision, said in sentences (pure).
* :mod:`~shared.monitoring.report`: the report as one self-contained HTML page.
* :mod:`~shared.monitoring.labels`: ground truth, checked and stored for the monitor.
* :mod:`~shared.monitoring.feedback`: labelled captures as a training dataset.

The top layer: may import everything below it (it asks :mod:`shared.pipeline.trigger` for a run).
"""
