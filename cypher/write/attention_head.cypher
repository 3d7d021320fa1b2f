// Upsert AttentionHead nodes.
// params: $rows: [{id, model, layer, head}]
// returns: n (rows written)
UNWIND $rows AS r
MERGE (h:AttentionHead {id: r.id})
SET h.model = r.model, h.layer = r.layer, h.head = r.head
RETURN count(*) AS n
