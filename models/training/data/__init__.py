"""Data: the synthetic audio-visual world, and loaders for it and for MSR-VTT-style datasets."""
