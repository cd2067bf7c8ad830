"""Labelling queues: export selected frames, label them with any ASE calculator, import results."""
