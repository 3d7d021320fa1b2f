// Delete up to $limit relationships carrying a circuit id (run until it returns 0); used
// before rewriting a circuit whose content changed, so no stale edge survives.
// params: $circuit (circuit id), $limit (batch size)
// returns: n (relationships deleted)
MATCH ()-[e]->()
WHERE e.circuit = $circuit
WITH e LIMIT $limit
DELETE e
RETURN count(*) AS n
