// Upsert Gene nodes (keyed by symbol).
// params: $rows: [{symbol}]
// returns: n (rows written), eids ([symbol, element id] per row: the export's relationship batches read
//          their end nodes by element id)
UNWIND $rows AS r
MERGE (g:Gene {symbol: r.symbol})
RETURN count(*) AS n, collect([r.symbol, elementId(g)]) AS eids
