// Weighted direct gene -> cell type edges of a circuit (only where the circuit has them).
// CREATEs (never MERGEs): the writer first deletes every relationship of a circuit that is not
// complete with this content (purge_circuit_edges), so a rerun never duplicates a row.
// params: $rows: [{circuit, source (gene symbol), target (cell type name), weight, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Gene {symbol: r.source})
MATCH (t:CellType {name: r.target})
CREATE (s)-[:GENE_TO_CELL_TYPE {circuit: r.circuit, weight: r.weight, frequency: r.frequency}]->(t)
RETURN count(*) AS n
