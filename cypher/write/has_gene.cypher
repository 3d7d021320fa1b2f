// Circuit membership of genes, with the gene's influence on the circuit's target.
// CREATEs (never MERGEs): the writer first deletes every relationship of a circuit that is not
// complete with this content (purge_circuit_edges), so a rerun never duplicates a row.
// params: $rows: [{circuit, symbol, influence, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Circuit {id: r.circuit})
MATCH (t:Gene {symbol: r.symbol})
CREATE (s)-[:HAS_GENE {circuit: r.circuit, influence: r.influence, frequency: r.frequency}]->(t)
RETURN count(*) AS n
