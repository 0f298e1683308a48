"""Data: the data contract, where contracts are kept, and validating a file against one."""
