// Circuit membership of features, with influence, frequency and mean activation.
// CREATEs (never MERGEs): the writer first deletes every relationship of a circuit that is not
// complete with this content (purge_circuit_edges), so a rerun never duplicates a row.
// params: $rows: [{circuit, feature (feature id), influence, frequency, activation}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Circuit {id: r.circuit})
MATCH (t:Feature {id: r.feature})
CREATE (s)-[:HAS_FEATURE {circuit: r.circuit, influence: r.influence, frequency: r.frequency, activation: r.activation}]->(t)
RETURN count(*) AS n
