"""Package data, installed as ``circuitdb.docker``: the Docker compose file and the
Maven project of the local Neo4j launcher (``pom.xml``, ``launcher/src/...``).

:mod:`circuitdb.graph.local_neo4j` builds the launcher from these files.
"""
