"""Data: what a model's data must look like, and what happens to a file that arrives.

* :mod:`~shared.data.contract`: the data contract (YAML) and its parser, every problem listed at once.
* :mod:`~shared.data.compute`: where a step runs (the contract's ``compute`` block), Fargate's task sizes
  and the ``auto`` rule (an estimate of peak memory and duration against the function's). Pure.
* :mod:`~shared.data.catalog`: where contracts are kept (``contracts/<model>.yaml``), and the one way a
  stored YAML document (a contract, a feature view) is read back.
* :mod:`~shared.data.quarantine`: the one way a file is refused: moved under ``quarantine/`` beside its
  ``.error.json``, one schema for every kind of file.
* :mod:`~shared.data.validation`: a CSV or Parquet file read and checked against a contract (or any
  :class:`~shared.data.validation.Rulebook`); the header check every file kind shares.
* :mod:`~shared.data.streaming`: the same rules applied to a file on disk a batch at a time, its dataset
  written a row group per batch, so Validate's memory stays flat as uploads grow.
* :mod:`~shared.data.datasets`: validated datasets as Parquet, their sha256 checked on every read.

May import the ground floor, the stores and ``services``. ``contract`` and ``catalog`` import neither
pandas nor boto3, so a light function (the trigger) can read a contract without paying for either.
"""
