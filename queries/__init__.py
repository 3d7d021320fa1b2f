"""Named Cypher queries with validated parameters; results as DataFrames or networkx.

Installed as ``circuitdb.queries`` (mapped from the top-level ``queries/`` folder).
"""
