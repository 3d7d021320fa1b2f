// Mark a circuit as completely written (the last step of its export).
// params: $id (circuit id), $n_edges (weighted edges written), $n_nodes (member nodes written)
// returns: id
MATCH (c:Circuit {id: $id})
SET c.complete = true, c.n_edges = $n_edges, c.n_nodes = $n_nodes
RETURN c.id AS id
