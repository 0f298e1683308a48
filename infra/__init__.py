"""Flywheel's infrastructure: the stack spec, the Pulumi program that deploys it, and the local cloud."""
