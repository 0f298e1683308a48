"""Monitoring: the monitor, its window and log, drift, the decision and report, labels and feedback."""
