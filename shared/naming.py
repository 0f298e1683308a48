"""The name rules, defined once: what a model, a feature view and an alias may be called.

The contract parser, the registry, the feature store and the prediction API's routes all check names with
these patterns, so a name one of them accepts is one every other can hold, serve and be asked for. A model
name becomes an S3 folder, a DynamoDB key and a URL path segment; a view name also separates the view from
the entity in online keys (never ``#`` or ``/``).
"""

from typing import Final

MODEL_NAME: Final = r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$"
# Like a model name, but also allowing '_' (``customer_profile``).
VIEW_NAME: Final = r"^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$"
ALIAS_NAME: Final = r"^[a-z][a-z0-9_-]{0,63}$"
