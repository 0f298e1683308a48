"""Flywheel's domain, deployed with every Lambda function.

Each module owns one concept (settings, observability, errors, ...) and only the storage adapters talk to
AWS. Nothing here reads ``os.environ`` directly: configuration arrives through :mod:`shared.settings`.
"""
