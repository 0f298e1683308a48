"""Flywheel's fixtures for this project's tests: flywheel_project, flywheel_component, flywheel_loop."""

from cli.testing import *  # noqa: F403
