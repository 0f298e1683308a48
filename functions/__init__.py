"""One thin Lambda handler per pipeline stage; the logic lives in `shared/`."""
