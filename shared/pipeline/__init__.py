"""The pipeline: the trigger, each state's step, delivery, verification and idempotency."""
