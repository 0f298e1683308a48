"""Preflight: what `pulumi up` would send to AWS, checked against AWS's own rules before anyone runs it.

The Pulumi program runs under provider mocks that answer as the real providers do (``mocks``); every
resource it declares is then held to the API call the provider makes (``rules``: botocore's service models,
and the documented limits the models do not carry), every IAM document to a policy linter (``policies``:
parliament), every state machine to an ASL validator (``asl``), and the function image's requirements to the
image's platform (``wheels``). ``python -m infra.preflight`` runs all of it for every stack; `make lint` calls
it. It imports the deploy-time tools (Pulumi, botocore, parliament, docker-py), never ``functions``.
"""
