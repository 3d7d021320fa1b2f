// Upsert CellType nodes (keyed by name).
// params: $rows: [{name}]
// returns: n (rows written), eids ([name, element id] per row, for the export's relationship batches)
UNWIND $rows AS r
MERGE (c:CellType {name: r.name})
RETURN count(*) AS n, collect([r.name, elementId(c)]) AS eids
