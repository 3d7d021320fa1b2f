// Weighted feature -> feature edges of a circuit.
// CREATEs (never MERGEs): the writer first deletes every relationship of a circuit that is not
// complete with this content (purge_circuit_edges), so a rerun never duplicates a row.
// params: $rows: [{circuit, source (feature id), target (feature id), weight, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Feature {id: r.source})
MATCH (t:Feature {id: r.target})
CREATE (s)-[:FEATURE_TO_FEATURE {circuit: r.circuit, weight: r.weight, frequency: r.frequency}]->(t)
RETURN count(*) AS n
