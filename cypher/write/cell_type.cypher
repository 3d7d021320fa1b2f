// Upsert CellType nodes (keyed by name).
// params: $rows: [{name}]
// returns: n (rows written)
UNWIND $rows AS r
MERGE (:CellType {name: r.name})
RETURN count(*) AS n
