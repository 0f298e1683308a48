"""Machine learning: training, evaluation and the row-preparation rule; pure functions over DataFrames."""
