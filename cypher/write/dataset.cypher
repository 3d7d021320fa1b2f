// Upsert Dataset nodes.
// params: $rows: [{id, name, n_cells, source}]
// returns: n (rows written)
UNWIND $rows AS r
MERGE (d:Dataset {id: r.id})
SET d.name = r.name, d.n_cells = r.n_cells, d.source = r.source
RETURN count(*) AS n
