"""The pipeline: what each state of the state machine does, and how a run starts and ends.

* :mod:`~shared.pipeline.state`: :class:`~shared.pipeline.state.RunState`, the payload passed between
  states (references only). It is an API: every step reads and returns it. Light: pydantic and the
  stores' record types.
* :mod:`~shared.pipeline.trigger`: every way a run starts, through one door, named deterministically.
* :mod:`~shared.pipeline.runs`: a step recorded on its run; closing the run (Finish, RecordFailure).
* :mod:`~shared.pipeline.intake`: Validate: a new file becomes a dataset or is refused (pandas, Arrow).
* :mod:`~shared.pipeline.compute`: placing Validate and Train on their function or a Fargate task, the
  task's own run of the step (``python -m functions.task``), and reading its state back. Light.
* :mod:`~shared.pipeline.steps`: Train, Evaluate, Register (the heavy ones: pandas, scikit-learn, skl2onnx).
* :mod:`~shared.pipeline.verification`: Verify and PostDeployCheck, proof on the serving path.
* :mod:`~shared.pipeline.delivery`: Promote, AwaitApproval, Declined (the policy arrives in the state).
* :mod:`~shared.pipeline.controls`: the CLI's manual moves (promote, rollback, approve, reject), each under
  the environment's policy.
* :mod:`~shared.pipeline.policy`: which way a verified version may move in this environment (pure).
* :mod:`~shared.pipeline.idempotency`: Register and Promote at most once per run.

May import :mod:`shared.serving` and below. A function imports only the module of its own step: trigger,
runs, delivery and policy import neither pandas, scikit-learn, scipy nor pyarrow, and delivery not even
the contract.
"""
