// Upsert Gene nodes (keyed by symbol).
// params: $rows: [{symbol}]
// returns: n (rows written)
UNWIND $rows AS r
MERGE (:Gene {symbol: r.symbol})
RETURN count(*) AS n
