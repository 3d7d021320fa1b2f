// Circuit membership of genes, with the gene's influence on the circuit's target.
// params: $rows: [{circuit, symbol, influence, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (c:Circuit {id: r.circuit})
MATCH (g:Gene {symbol: r.symbol})
MERGE (c)-[m:HAS_GENE {circuit: r.circuit}]->(g)
SET m.influence = r.influence, m.frequency = r.frequency
RETURN count(*) AS n
