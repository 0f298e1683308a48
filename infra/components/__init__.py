"""The Pulumi program's building blocks: one ComponentResource per capability, composed by `deploy`."""
