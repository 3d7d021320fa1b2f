// The attention heads that carry the most weight in a cell type's circuit: per head, the summed
// per-head parts of all its edges (total), of its edges straight into the cell type (direct), and |total|.
// params: $cell_type (text), $dataset (dataset id or null = any), $limit (int)
// returns: head, layer, head_index, total_weight, total_abs_weight, direct_weight, n_edges
MATCH (c:Circuit {cell_type: $cell_type})
WHERE $dataset IS NULL OR c.dataset = $dataset
MATCH (h:AttentionHead)-[e:HEAD_CARRIES {circuit: c.id}]->(t)
WITH h, e, CASE WHEN t:CellType THEN e.weight ELSE 0.0 END AS direct
RETURN h.id AS head, h.layer AS layer, h.head AS head_index, sum(e.weight) AS total_weight,
       sum(abs(e.weight)) AS total_abs_weight, sum(direct) AS direct_weight, count(e) AS n_edges
ORDER BY total_abs_weight DESC, head
LIMIT $limit
