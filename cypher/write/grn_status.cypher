// The stored state of a GRN import: whether it finished and the content hash it wrote.
// params: $name (GRN name)
// returns: name, complete, content_hash
MATCH (g:GRN {name: $name})
RETURN g.name AS name, g.complete AS complete, g.content_hash AS content_hash
