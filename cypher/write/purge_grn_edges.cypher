// Delete up to $limit REGULATES relationships of one GRN (before re-importing changed content).
// params: $grn (GRN name), $limit (int)
// returns: n (relationships deleted)
MATCH ()-[e:REGULATES {grn: $grn}]->()
WITH e LIMIT $limit
DELETE e
RETURN count(*) AS n
