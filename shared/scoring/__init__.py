"""Batch scoring: every file under a prefix scored with one model version, with lineage.

- :mod:`shared.scoring.job` — the records (request, job, item, a file's outcome, the manifest) and the pure
  rules: where outputs go, reading a file's rows, keeping a file's valid rows, summing the manifest. It
  imports pydantic and light ``shared`` modules; pyarrow only when a file is read.
- :mod:`shared.scoring.run` — the steps the functions call (start a job, score one file, finish the job)
  over the stack's adapters; scoring goes through :mod:`shared.serving.runtime`, as ``predict`` does.
"""
