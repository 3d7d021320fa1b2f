// Circuit membership of features, with influence, frequency and mean activation.
// CREATEs (never MERGEs): the writer first deletes every relationship of a circuit that is not
// complete with this content (purge_circuit_edges), so a rerun never duplicates a row.
// Columnar rows (one list per column, row i across them); the batch's circuit ids are sent once, and
// the end nodes come as element ids (as the node MERGEs of the export returned them), so each row
// costs two direct node reads instead of two index seeks.
// params: $circuits (distinct circuit ids), $ci (per row: index into $circuits),
//   $t (element id of the feature), $influence, $frequency, $activation (one list each)
// returns: n (rows written)
UNWIND range(0, size($ci) - 1) AS i
MATCH (s:Circuit {id: $circuits[$ci[i]]})
MATCH (t:Feature) WHERE elementId(t) = $t[i]
CREATE (s)-[:HAS_FEATURE {circuit: $circuits[$ci[i]], influence: $influence[i], frequency: $frequency[i], activation: $activation[i]}]->(t)
RETURN count(*) AS n
