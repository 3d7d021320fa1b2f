// Example graph (demo v1): merge Gene nodes by symbol.
// params: $rows (list of {symbol})
// returns: nothing
UNWIND $rows AS row
MERGE (g:Gene {symbol: row.symbol})
