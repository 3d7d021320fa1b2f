"""Inputs: AnnData -> C2S cell sentences and prompts, C2S model loading, GRN tables.

Installed as ``circuitdb.loaders`` (mapped from the top-level ``loaders/`` folder).
"""
