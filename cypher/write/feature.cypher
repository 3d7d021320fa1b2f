// Upsert Feature nodes; density and top_genes keep their stored value when a row has none.
// params: $rows: [{id, layer, index, transcoder_set, density, top_genes}]
// returns: n (rows written), eids ([id, element id] per row, for the export's relationship batches)
UNWIND $rows AS r
MERGE (f:Feature {id: r.id})
SET f.layer = r.layer, f.index = r.index, f.transcoder_set = r.transcoder_set,
    f.density = coalesce(r.density, f.density), f.top_genes = coalesce(r.top_genes, f.top_genes)
RETURN count(*) AS n, collect([r.id, elementId(f)]) AS eids
