// Weighted direct gene -> cell type edges of a circuit (only where the circuit has them).
// params: $rows: [{circuit, mkey (merge key), source (gene symbol), target (cell type name), weight, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Gene {symbol: r.source})
MATCH (t:CellType {name: r.target})
MERGE (s)-[e:GENE_TO_CELL_TYPE {mkey: r.mkey}]->(t)
SET e.circuit = r.circuit, e.weight = r.weight, e.frequency = r.frequency
RETURN count(*) AS n
