// Weighted feature -> feature edges of a circuit.
// CREATEs (never MERGEs): the writer first deletes every relationship of a circuit that is not
// complete with this content (purge_circuit_edges), so a rerun never duplicates a row.
// Columnar rows (one list per column, row i across them: less to send and decode than a list
// of maps); the batch's circuit ids are sent once.
// params: $circuits (distinct circuit ids), $ci (per row: index into $circuits),
//   $source (feature id), $target (feature id), $weight, $frequency (one list each)
// returns: n (rows written)
UNWIND range(0, size($ci) - 1) AS i
MATCH (s:Feature {id: $source[i]})
MATCH (t:Feature {id: $target[i]})
CREATE (s)-[:FEATURE_TO_FEATURE {circuit: $circuits[$ci[i]], weight: $weight[i], frequency: $frequency[i]}]->(t)
RETURN count(*) AS n
