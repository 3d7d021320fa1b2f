// Gene -> cell type paths of one circuit, through 1 to 3 transcoder features, every edge at least
// $min_weight in absolute value; strongest (|product of weights|) first.
// params: $circuit (circuit id), $min_weight (float >= 0), $limit (int)
// returns: gene, features (feature ids along the path), cell_type, score (product of edge weights), hops
MATCH p = (g:Gene)-[:INPUT_TO]->(:Feature)-[:DRIVES*0..2]->(:Feature)-[:PREDICTS]->(c:CellType)
WHERE all(r IN relationships(p) WHERE r.circuit = $circuit AND abs(r.weight) >= $min_weight)
WITH g, c, p, reduce(s = 1.0, r IN relationships(p) | s * r.weight) AS score
RETURN g.symbol AS gene,
       [n IN nodes(p) WHERE n:Feature | n.id] AS features,
       c.name AS cell_type,
       score,
       length(p) AS hops
ORDER BY abs(score) DESC, gene ASC, hops ASC
LIMIT $limit
