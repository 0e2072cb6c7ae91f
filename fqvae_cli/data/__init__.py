"""Ground-truth datasets: factor spaces, converters from the official files, the prepared store and
the procedural default dataset."""
