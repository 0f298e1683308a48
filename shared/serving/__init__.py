"""Serving: a registered version answering requests, and the proof that it can.

* :mod:`~shared.serving.runtime`: the signature check, loading a version from verified bytes, the model
  cache behind the ``production`` alias. No pandas; scikit-learn only for the sklearn flavour.
* :mod:`~shared.serving.api`: the prediction API's routes, models and errors (Powertools' resolver).
* :mod:`~shared.serving.lookup`: the view features a request leaves out, filled from the online store.
* :mod:`~shared.serving.capture`: what was asked and answered, sent to the capture stream.
* :mod:`~shared.serving.packaging`: ONNX or scikit-learn, decided by parity on the holdout (training time).

May import :mod:`shared.featurestore` and below.
"""
