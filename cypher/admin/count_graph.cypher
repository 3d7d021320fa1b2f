// Node and relationship totals of the whole graph.
// params: none
// returns: nodes, relationships
CALL { MATCH (n) RETURN count(n) AS nodes }
CALL { MATCH ()-[r]->() RETURN count(r) AS relationships }
RETURN nodes, relationships
