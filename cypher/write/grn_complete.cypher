// Mark a GRN import finished (after its last REGULATES batch).
// params: $name (GRN name)
// returns: name
MATCH (g:GRN {name: $name})
SET g.complete = true
RETURN g.name AS name
