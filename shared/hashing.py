"""Content hashes: every artifact and dataset is identified and verified by its sha256."""

import hashlib


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
