"""circuitdb: transcoder circuits of single-cell foundation models, stored as a graph.

Stages, each a subpackage that hands the next plain data:

``circuitdb.loaders``      AnnData -> cell sentences and prompts; C2S model loading
``circuitdb.transcoder``   harvest MLP activations, train and evaluate transcoders
``circuitdb.attribution``  replacement model, attribution graphs, circuits
``circuitdb.graph``        typed schema, backends (Neo4j, embedded ArcadeDB), writer
``circuitdb.queries``      named Cypher queries with validated parameters
``circuitdb.interpret``    automated feature interpretation
"""

__version__ = "0.1.0"
