"""Machine learning: pure functions over DataFrames and the contract, no I/O.

* :mod:`~shared.ml.features`: how one row is prepared for a model, in pure Python (training and serving
  share the rule; no pandas).
* :mod:`~shared.ml.training`: the pipeline a contract names, the holdout split, fitting, the reference
  profile the monitor compares traffic with.
* :mod:`~shared.ml.training_window`: which datasets a run trains on, and the frame they make together.
* :mod:`~shared.ml.evaluation`: scores on a holdout and the gate's decision.

May import :mod:`shared.data` and below. Importing ``training`` or ``evaluation`` loads pandas and
scikit-learn; only the functions that train or score import them.
"""
