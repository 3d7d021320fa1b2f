// Upsert GeneSet nodes (a marker set, a TF regulon or a GMT term), keyed by "{library}:{name}".
// params: $rows: [{id, library, name, size}]
// returns: n (rows written)
UNWIND $rows AS r
MERGE (s:GeneSet {id: r.id})
SET s.library = r.library, s.name = r.name, s.size = r.size
RETURN count(*) AS n
