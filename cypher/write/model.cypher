// Upsert Model nodes.
// params: $rows: [{id, name, architecture, n_layers, hash}]
// returns: n (rows written)
UNWIND $rows AS r
MERGE (m:Model {id: r.id})
SET m.name = r.name, m.architecture = r.architecture, m.n_layers = r.n_layers, m.hash = r.hash
RETURN count(*) AS n
