// Circuit membership of genes, with the gene's influence on the circuit's target.
// params: $rows: [{circuit, mkey (merge key), symbol, influence, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (c:Circuit {id: r.circuit})
MATCH (g:Gene {symbol: r.symbol})
MERGE (c)-[m:HAS_GENE {mkey: r.mkey}]->(g)
SET m.circuit = r.circuit, m.influence = r.influence, m.frequency = r.frequency
RETURN count(*) AS n
