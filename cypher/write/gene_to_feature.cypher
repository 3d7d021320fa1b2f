// Weighted gene -> feature edges of a circuit.
// CREATEs (never MERGEs): the writer first deletes every relationship of a circuit that is not
// complete with this content (purge_circuit_edges), so a rerun never duplicates a row.
// Columnar rows (one list per column, row i across them); the batch's circuit ids are sent once, and
// the end nodes come as element ids (as the node MERGEs of the export returned them), so each row
// costs two direct node reads instead of two index seeks.
// params: $circuits (distinct circuit ids), $ci (per row: index into $circuits),
//   $s (element id of the gene), $t (element id of the feature), $weight, $frequency (one list each)
// returns: n (rows written)
UNWIND range(0, size($ci) - 1) AS i
MATCH (s:Gene) WHERE elementId(s) = $s[i]
MATCH (t:Feature) WHERE elementId(t) = $t[i]
CREATE (s)-[:GENE_TO_FEATURE {circuit: $circuits[$ci[i]], weight: $weight[i], frequency: $frequency[i]}]->(t)
RETURN count(*) AS n
