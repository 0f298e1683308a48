"""The training window: which of a model's datasets a run trains on, and the one frame they make.

The contract's ``training.window`` keeps the latest ``files`` datasets, or those reaching into the last
``days`` by timestamp; the frames are combined oldest first, a row id seen again keeping its latest row.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from shared.data.contract import DataContract
from shared.metadata import Dataset


def training_window(datasets: list[Dataset], contract: DataContract) -> list[Dataset]:
    """The datasets a run trains on: the latest ``files`` of them, or those reaching the last ``days``."""
    window = contract.training.window
    if window.files is not None:
        return datasets[-window.files :]
    ends = [d.time_range.end for d in datasets if d.time_range and d.time_range.end]
    if not ends or window.days is None:
        return datasets
    cutoff = max(ends) - timedelta(days=window.days)
    return [
        d for d in datasets if d.time_range is None or d.time_range.end is None or d.time_range.end >= cutoff
    ]


def combine(frames: list[pd.DataFrame], contract: DataContract, id_column: str) -> pd.DataFrame:
    """One training frame from several datasets, oldest first: a row id seen again keeps its latest row,
    and a ``days`` window drops rows older than the window."""
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop_duplicates(subset=[id_column], keep="last").reset_index(drop=True)
    days = contract.training.window.days
    if days is not None and contract.timestamp_column:
        stamps = frame[contract.timestamp_column]
        frame = frame[stamps >= stamps.max() - pd.Timedelta(days=days)].reset_index(drop=True)
    return frame
