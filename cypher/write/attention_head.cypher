// Upsert AttentionHead nodes.
// params: $rows: [{id, model, layer, head}]
// returns: n (rows written), eids ([id, element id] per row, for the export's relationship batches)
UNWIND $rows AS r
MERGE (h:AttentionHead {id: r.id})
SET h.model = r.model, h.layer = r.layer, h.head = r.head
RETURN count(*) AS n, collect([r.id, elementId(h)]) AS eids
