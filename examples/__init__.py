"""The demo: a churn data generator and its data contract."""
