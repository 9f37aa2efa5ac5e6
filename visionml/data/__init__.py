"""Data in: reading and validating Azure AutoML-for-Images JSONL, image access, datasets."""
