"""Models of the paper as compositions: trunk (encoder/decoder) + bottleneck + regularizers."""
