// Mark circuits as completely written (the last step of their export, after their last edge batch).
// params: $rows: [{id (circuit id), n_edges (weighted edges written), n_nodes (member nodes written)}]
// returns: n (circuits marked)
UNWIND $rows AS r
MATCH (c:Circuit {id: r.id})
SET c.complete = true, c.n_edges = r.n_edges, c.n_nodes = r.n_nodes
RETURN count(*) AS n
